// pitd's HTTP front door from Node (20 or later), with its built-in fetch: a call, then a
// stream whose server-sent events are read as they come with response.body.getReader().
//
//   PIT_URL=http://127.0.0.1:8080 PIT_TOKEN=... node examples/clients/node.mjs
//
// PIT_URL is the front door ([http] listen), PIT_TOKEN a bearer token of tokens.toml (unset
// for a loopback door without tokens), PIT_CA a CA file to trust for https (a self-signed
// deployment). The pools are config/demo.toml's: echo and agent.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const { PIT_URL, PIT_TOKEN, PIT_CA } = process.env;
if (!PIT_URL) {
  console.error("node.mjs: set PIT_URL to pitd's front door, such as http://127.0.0.1:8080");
  process.exit(2);
}
if (PIT_CA && process.env.NODE_EXTRA_CA_CERTS !== PIT_CA) {
  // fetch takes no CA option; Node trusts NODE_EXTRA_CA_CERTS, read once at its start.
  const again = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], {
    stdio: "inherit",
    env: { ...process.env, NODE_EXTRA_CA_CERTS: PIT_CA },
  });
  process.exit(again.status ?? 1);
}

const base = PIT_URL.replace(/\/+$/, "");

function post(pool, method, args, headers = {}) {
  return fetch(`${base}/v1/call/${pool}/${method}`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      ...(PIT_TOKEN ? { Authorization: `Bearer ${PIT_TOKEN}` } : {}),
      ...headers,
    },
    body: JSON.stringify(args),
    signal: AbortSignal.timeout(30_000),
  });
}

// An answer that is not a 200: its body is {"error": {"kind", "message", ...}}.
async function refused(response) {
  const text = await response.text();
  let error;
  try {
    error = JSON.parse(text).error;
  } catch {}
  return new Error(`HTTP ${response.status}: ${error ? `${error.kind}: ${error.message}` : text}`);
}

async function main() {
  // 1. A call: echo returns its args; Pit-Worker names the worker that ran it.
  const call = await post("echo", "echo", { hello: "world" });
  if (!call.ok) throw await refused(call);
  const result = await call.json();
  console.log(`call: ${JSON.stringify(result)} from ${call.headers.get("pit-worker")}`);
  if (result.hello !== "world") throw new Error("the call did not echo its args");

  // 2. A stream: agent's tokens, each event printed as it arrives. Events are
  // "event: chunk|end|error", "data: <one line of JSON>", then a blank line.
  const args = { prompt: "one two three", count: 3, interval: 0.2 };
  const stream = await post("agent", "tokens", args, { Accept: "text/event-stream" });
  if (!stream.ok) throw await refused(stream);
  const reader = stream.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "message";
  let chunks = 0;
  console.log("stream:");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the stream ended without its end event");
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line.startsWith("event:")) {
        event = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        const data = JSON.parse(line.slice(5));
        if (event === "chunk") {
          chunks += 1;
          console.log(`  chunk: ${JSON.stringify(data)}`);
        } else if (event === "error") {
          throw new Error(`the stream failed: ${data.kind}: ${data.message}`);
        } else if (event === "end") {
          console.log(`  end after ${chunks} chunks`);
          await reader.cancel(); // done: closing the body lets the connection go
          if (chunks === 0) throw new Error("no chunk came");
          return;
        }
      } else if (line === "") {
        event = "message";
      }
    }
  }
}

main().catch((error) => {
  console.error(`node.mjs: ${error.message}`);
  process.exit(1);
});
