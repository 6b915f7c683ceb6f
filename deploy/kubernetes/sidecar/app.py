"""The demo application of the sidecar variant: a small HTTP service that calls pit.

It calls the pools of the pitd sidecar through the call socket they share (an emptyDir
volume; the path comes from $PITD_CALL_SOCKET, which pit.Client reads):

    GET /echo?msg=hi             -> pool echo, method echo
    GET /predict?text=word3+w7   -> pool model, method predict
    GET /healthz                 -> 200 while the HTTP server runs (pit is not called:
                                    pitd's own readiness probe speaks for pit)

On SIGTERM it stops accepting connections and waits for the requests in progress, then
exits; pitd, a native sidecar, is stopped only after that.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pit

PORT = int(os.environ.get("APP_PORT", "8080"))
# Seconds a call may take; pitd enforces it and answers `timeout` past it.
CALL_TIMEOUT = float(os.environ.get("APP_CALL_TIMEOUT", "10"))
# Error kinds that say "not now" rather than "bad request": the client may retry elsewhere.
UNAVAILABLE = {"queue_full", "queue_timeout", "pool_drained", "pool_failing", "shutting_down", "connection_lost"}

# One pipelined connection shared by every request thread; it reconnects by itself after
# pitd restarts.
client = pit.Client()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/healthz":
            self.reply(200, {"ok": True})
        elif url.path == "/echo":
            self.call("echo", "echo", {"msg": query.get("msg", [""])[0]})
        elif url.path == "/predict":
            self.call("model", "predict", query.get("text", [""])[0])
        else:
            self.reply(404, {"error": f"no route {url.path}"})

    def call(self, pool: str, method: str, args: object) -> None:
        try:
            result = client.call(pool, method, args, timeout=CALL_TIMEOUT)
        except pit.CallError as e:
            status = 503 if e.kind in UNAVAILABLE else 502
            self.reply(status, {"error": e.kind, "message": e.message})
        else:
            self.reply(200, {"result": result})

    def reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    # server_close() then waits for the requests in progress instead of abandoning them.
    daemon_threads = False
    block_on_close = True


def main() -> None:
    server = Server(("", PORT), Handler)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return: it must run on another thread
        # than the one serving, which is the one this handler interrupts.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on :{PORT}, calling pit at {client.path}", flush=True)
    server.serve_forever()
    server.server_close()
    client.close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
