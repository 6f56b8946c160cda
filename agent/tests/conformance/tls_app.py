"""Python's own HTTPS: http.server (ThreadingHTTPServer, HTTP/1.1 keep-alive) wrapped in an
`ssl` server context, and urllib as an HTTPS client, both on the machine's OpenSSL through
Python's `_ssl` (SSL_read_ex/SSL_write_ex). GET /call/<n> GETs DOWNSTREAM + "/ok/<n>" over HTTPS
(certificate not verified: the tests make self-signed ones) and answers its status; GET
/missing answers 404; any other GET answers "ok".
Usage: tls_app.py PORT CERT KEY DOWNSTREAM"""
import http.server
import ssl
import sys
import urllib.error
import urllib.request

PORT, CERT, KEY, DOWNSTREAM = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
CLIENT = ssl.create_default_context()
CLIENT.check_hostname = False
CLIENT.verify_mode = ssl.CERT_NONE


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
        if self.path.startswith("/call/"):
            n = self.path.rsplit("/", 1)[1]
            try:
                with urllib.request.urlopen(f"{DOWNSTREAM}/ok/{n}", context=CLIENT, timeout=10) as r:
                    self.reply(200, str(r.status).encode())
            except urllib.error.HTTPError as e:
                self.reply(502, str(e.code).encode())
        elif self.path.startswith("/missing"):
            self.reply(404, b"no")
        else:
            self.reply(200, b"ok")


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
