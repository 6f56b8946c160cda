"""Python's asyncio over TLS (ssl.SSLObject on memory BIOs, the machine's OpenSSL): a minimal
HTTP/1.1 keep-alive server on asyncio streams, whose GET /call/<n> GETs DOWNSTREAM + "/ok/<n>"
over HTTPS with an asyncio client connection (certificate not verified: the tests make
self-signed ones) and answers its status; GET /missing/<n> answers 404; any other GET "ok".
Usage: tls_asyncio.py PORT CERT KEY DOWNSTREAM"""
import asyncio
import ssl
import sys
import urllib.parse

PORT, CERT, KEY, DOWNSTREAM = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
CLIENT = ssl.create_default_context()
CLIENT.check_hostname = False
CLIENT.verify_mode = ssl.CERT_NONE


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


async def get(url):
    u = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port, ssl=CLIENT)
    writer.write(f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line, headers = await read_head(reader)
    await reader.readexactly(int(headers.get("content-length", "0")))
    writer.close()
    return int(status_line.split(" ")[1])


async def serve(reader, writer):
    try:
        while True:
            request_line, _ = await read_head(reader)
            path = request_line.split(" ")[1]
            if path.startswith("/call/"):
                status, body = 200, str(await get(f"{DOWNSTREAM}/ok/{path.rsplit('/', 1)[1]}")).encode()
            elif path.startswith("/missing"):
                status, body = 404, b"no"
            else:
                status, body = 200, b"ok"
            reason = "OK" if status == 200 else "Not Found"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    server = await asyncio.start_server(serve, "127.0.0.1", PORT, ssl=ctx)
    async with server:
        await server.serve_forever()


asyncio.run(main())
