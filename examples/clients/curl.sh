#!/usr/bin/env bash
# pitd's HTTP front door from the shell, with curl: a call, a stream, an error.
#
#   PIT_URL=http://127.0.0.1:8080 PIT_TOKEN=... bash examples/clients/curl.sh
#
# PIT_URL is the front door ([http] listen), PIT_TOKEN a bearer token of tokens.toml (leave
# it unset for a loopback door without tokens), PIT_CA a CA file to trust for https (a
# self-signed deployment). The pools are config/demo.toml's: echo and agent.
set -euo pipefail

: "${PIT_URL:?set PIT_URL to the front door of pitd, such as http://127.0.0.1:8080}"
url=${PIT_URL%/}
curl_opts=(--silent --show-error --max-time 30 -H 'Content-Type: application/json')
if [ -n "${PIT_TOKEN:-}" ]; then curl_opts+=(-H "Authorization: Bearer $PIT_TOKEN"); fi
if [ -n "${PIT_CA:-}" ]; then curl_opts+=(--cacert "$PIT_CA"); fi

fail() { echo "curl.sh: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# post POOL/METHOD JSON: the body goes to $tmp/body, the head to $tmp/head; prints the status.
post() {
  curl "${curl_opts[@]}" --data "$2" -o "$tmp/body" -D "$tmp/head" -w '%{http_code}' "$url/v1/call/$1"
}

# 1. A call: echo returns its args; the answer's Pit-Worker header names the worker.
status=$(post echo/echo '{"hello": "world"}') || fail "no answer from $url"
worker=$(sed -n 's/^[Pp]it-[Ww]orker: *\([^[:space:]]*\).*/\1/p' "$tmp/head")
echo "call: HTTP $status $(cat "$tmp/body") from ${worker:-?}"
[ "$status" = 200 ] || fail "the call failed"
grep -q '"world"' "$tmp/body" || fail "the call did not echo its args"

# 2. A stream: agent's tokens as server-sent events, printed as they come (-N: unbuffered).
# Each event is "event: chunk|end|error" then "data: <one line of JSON>" then a blank line.
echo "stream:"
curl "${curl_opts[@]}" -N -H 'Accept: text/event-stream' \
  --data '{"prompt": "one two three", "count": 3, "interval": 0.2}' "$url/v1/call/agent/tokens" |
  {
    event="" chunks=0
    while IFS= read -r line; do
      line=${line%$'\r'}
      case $line in
        "event: "*) event=${line#event: } ;;
        "data: "*)
          data=${line#data: }
          case $event in
            chunk) chunks=$((chunks + 1)); echo "  chunk: $data" ;;
            end) echo "  end after $chunks chunks"; [ "$chunks" -gt 0 ]; exit ;;
            error) echo "  error: $data"; exit 1 ;;
          esac ;;
        "{"*) echo "  refused: $line"; exit 1 ;;  # an error status: the body is the error
      esac
    done
    echo "  the stream ended without its end event"
    exit 1
  } || fail "the stream failed"

# 3. An error: echo's fail raises, which is a handler_error, HTTP 500 with the error as JSON.
status=$(post echo/fail '"on purpose"') || fail "no answer from $url"
echo "error: HTTP $status $(cat "$tmp/body")"
[ "$status" = 500 ] || fail "expected HTTP 500"
grep -q '"handler_error"' "$tmp/body" || fail "expected kind handler_error"
