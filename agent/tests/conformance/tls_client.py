"""A keep-alive HTTPS client that outlives the agent's start: opens one connection to HOST:PORT
(http.client, certificate not verified), GETs /ok/1 on it and prints "ready"; then for each line
"N" read from stdin GETs PATH_PREFIX<i> N times on the same connection and prints the statuses.
Usage: tls_client.py HOST PORT PATH_PREFIX"""
import http.client
import ssl
import sys

HOST, PORT, PREFIX = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
conn = http.client.HTTPSConnection(HOST, PORT, context=ctx, timeout=10)


def get(path):
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    return r.status


get("/ok/1")
print("ready", flush=True)
for line in sys.stdin:
    print(" ".join(str(get(f"{PREFIX}{i}")) for i in range(1, int(line) + 1)), flush=True)
