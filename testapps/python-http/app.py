#!/usr/bin/env python3
"""Minimal HTTP/1.1 test service (stdlib only) used to exercise beyla-rs instrumentation.

Routes: GET /ping, GET /users/{id}, POST /echo, GET /error, GET /call (-> $DOWNSTREAM_URL), else 404.
Usage: app.py <port>
"""
import http.client
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep stdout/stderr quiet
        pass

    def reply(self, status, body, ctype="text/plain"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/ping":
            self.reply(200, "pong")
        elif path.startswith("/users/") and len(path) > len("/users/"):
            uid = path[len("/users/"):]
            self.reply(200, '{"id":"%s"}' % uid, "application/json")
        elif path == "/error":
            self.reply(500, "boom")
        elif path == "/call":
            self.call_downstream()
        else:
            self.reply(404, "not found")

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # skip trailers
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""  # buffered read loops until complete

    def do_POST(self):
        body = self.read_body()
        if self.path.split("?", 1)[0] == "/echo":
            self.reply(200, body, "application/octet-stream")
        else:
            self.reply(404, "not found")

    def do_other(self):
        self.read_body()
        self.reply(404, "not found")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_other

    def call_downstream(self):
        url = os.environ.get("DOWNSTREAM_URL")
        if not url:
            self.reply(502, "DOWNSTREAM_URL not set")
            return
        try:
            u = urllib.parse.urlsplit(url)
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
            conn.request("GET", (u.path or "/") + ("?" + u.query if u.query else ""),
                         headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            self.reply(200, "called:%d" % resp.status)
        except Exception as e:  # noqa: BLE001
            self.reply(502, "downstream error: %s" % e)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: app.py <port>")
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("listening on %d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
