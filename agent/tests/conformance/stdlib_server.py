"""Python's own http.server (ThreadingHTTPServer, HTTP/1.1 keep-alive) for the conformance
tests: GET /item/<n> answers n bytes; any other GET answers "ok"; PUT reads its body (after
`100 Continue` when the client asks for it, as http.server does) and answers its size.
Usage: stdlib_server.py PORT"""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/item/"):
            self.reply(200, b"i" * int(self.path.rsplit("/", 1)[1]))
        else:
            self.reply(200, b"ok")

    def do_PUT(self):
        left = int(self.headers.get("Content-Length", "0"))
        got = 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            got += len(chunk)
            left -= len(chunk)
        self.reply(201, str(got).encode())


http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
