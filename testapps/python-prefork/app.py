"""Pre-fork HTTP server (gunicorn style) for the discovery tests.

The parent binds 127.0.0.1:<port> and prints `listening on <port>`; when a line arrives on its
standard input (or at once if stdin is closed) it forks WORKERS children (default 2) that accept
on the shared socket and serve GET /ping -> 200 pong, then prints `workers <pid> <pid>`. The
parent itself never accepts. Tests decide when the workers start, e.g. after the agent traces
the parent.
"""
import http.server
import os
import signal
import socket
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"pong" if self.path == "/ping" else b"not found"
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    print(f"listening on {port}", flush=True)
    sys.stdin.readline()
    children = []
    for _ in range(int(os.environ.get("WORKERS", "2"))):
        pid = os.fork()
        if pid == 0:
            server = http.server.HTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
            server.socket.close()
            server.socket = sock
            server.serve_forever()
            os._exit(0)
        children.append(pid)
    print("workers " + " ".join(map(str, children)), flush=True)

    def stop(*_):
        for c in children:
            os.kill(c, signal.SIGTERM)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
