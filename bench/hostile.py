#!/usr/bin/env python3
"""Hostile traffic on a traced server (issue 23): Debian's nginx gets random and adversarial
bytes, first without the agent, then with it, and the answers must be byte-identical.

Scenarios (counts at --scale 1; CI's test runs a fraction):
  garbage     2,000 connections of seeded random bytes (1 B - 4 KiB)
  invalid     malformed HTTP/1.x heads (bad method, version, header syntax, NULs, bare LF,
              two Content-Lengths, negative length, obs-fold, 300 headers), each on its own
              connection; any that nginx accepts reach `location /invalid` (418)
  huge_heads  heads of 8 KiB, 16 KiB, 64 KiB and 1 MiB (nginx answers 400 or 414)
  chunked     POST /sink with 2,000-chunk bodies (odd sizes, chunk extensions), terminated;
              and POST /sink-open with bodies that never end (closed after 500 chunks)
  h2_bogus    h2c prior knowledge on nginx's http2 port: frames with bogus lengths, unknown
              types, a HEADERS block with invalid HPACK indexes, an HPACK bomb (a 4 KiB header
              inserted once and referenced 10,000 times across CONTINUATION frames), seeded
              random frames
  slowloris   100 concurrent connections each sending `GET /ok` one byte every 20 ms (200)
  paths       100,000 distinct paths (`/hostile/<word><n>/<n>`), 10 pipelined per write (404)
  deep_pipeline  20 connections of 100 requests pipelined in one write (`/deep/...`, 404)
  churn       100,000 connections opened and dropped with RST (a third after half a head)

Checks: the answers (per scenario, in order, `Date:` lines aside) are identical with and without
the agent; the agent is alive at the end, its RSS (sampled every 0.2 s) stays within the
documented bounds (peak <= 80 MB, <= 40 MB at the end, with --rss-bounds for a release build; its
growth under the traffic, <= 16 MB, always); the requests nginx answered 404 (paths),
200 on /ok (slowloris) and 200 on POST /sink are counted exactly; the decode errors are reported
by reason. Prints a JSON report (--json FILE writes it) and exits 1 if a check fails.

Usage: bench/hostile.py --agent target/release/beyla [--scale 1.0] [--json out.json]
Needs root (the agent) and nginx (scripts/setup.sh).
"""
import argparse
import hashlib
import json
import os
import random
import re
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

PEAK_RSS_MB = 80
END_RSS_MB = 40
GROWTH_MB = 16
DATE = re.compile(rb"\r\nDate: [^\r\n]*")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exchange(port, chunks, pause=0.0, timeout=5.0, src=None, settle=0.0):
    """Sends `chunks` (reading meanwhile, so that a server answering early never blocks us),
    half-closes, and returns every byte the server sent until it closed or went quiet. With
    `settle`, waits until the server has been quiet that long (or closed) before half-closing:
    a server that sees the end of input while it is still answering may cut its answer short,
    and where it cuts depends on timing, not on its input."""
    s = socket.socket()
    if src:
        s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    got = bytearray()
    closed = False
    sel = selectors.DefaultSelector()
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)

    def drain(wait):
        nonlocal closed
        deadline = time.monotonic() + wait
        while not closed:
            left = deadline - time.monotonic()
            if not sel.select(max(0.0, left)):
                if left <= 0:
                    return
                continue
            try:
                b = s.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                closed = True
                return
            if not b:
                closed = True
                return
            got.extend(b)

    for c in chunks:
        view = memoryview(c)
        while view and not closed:
            try:
                n = s.send(view)
                view = view[n:]
            except BlockingIOError:
                drain(0.01)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        if closed:
            break
        drain(pause)
    while settle and not closed:
        before = len(got)
        drain(settle)
        if len(got) == before:
            break
    if not closed:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        drain(timeout)
    s.close()
    return bytes(got)


def rst(port, head=b"", src=None):
    """Opens a connection, sends `head` and drops it with RST (no TIME_WAIT left behind)."""
    s = socket.socket()
    if src:
        s.bind((src, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        s.connect(("127.0.0.1", port))
        if head:
            s.sendall(head)
    except OSError:
        pass
    s.close()


def scenario_garbage(ports, n, rng):
    bodies = [rng.randbytes(rng.randint(1, 4096)) for _ in range(n)]
    return [exchange(ports["h1"], [b], timeout=2.0) for b in bodies]


INVALID = [
    b"G\x00T /invalid HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /invalid HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /invalid HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET /invalid HTTP/1.1\r\nHo\x00st: x\r\n\r\n",
    b"GET /invalid HTTP/1.1\nHost: x\n\n",
    b"GET /invalid HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /invalid HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET /invalid HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n  b\r\n\r\n",
    b"GET /invalid HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(300)) + b"\r\n",
    b"\r\n\r\n\r\nGET /invalid HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET  /invalid  HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /inv alid HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /invalid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"GET /invalid HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /invalid HTTP/1.1\r\nHost: x\r\n\r\nGET /invalid HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
]


def scenario_invalid(ports, n, rng):
    return [exchange(ports["h1"], [INVALID[i % len(INVALID)]], timeout=2.0) for i in range(n)]


def scenario_huge_heads(ports, n, rng):
    out = []
    for i in range(n):
        size = [8 << 10, 16 << 10, 64 << 10, 1 << 20][i % 4]
        head = b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        if i % 8 >= 4:  # a long request line instead
            head = b"GET /ok?" + b"q" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        out.append(exchange(ports["h1"], [head[j:j + 8192] for j in range(0, len(head), 8192)], timeout=3.0))
    return out


def chunked_body(rng, chunks, end):
    parts = []
    for i in range(chunks):
        data = rng.randbytes(rng.randint(1, 700))
        ext = b";ext=%d" % i if i % 7 == 0 else b""
        parts.append(b"%x%s\r\n%s\r\n" % (len(data), ext, data))
    if end:
        parts.append(b"0\r\nX-Trailer: t\r\n\r\n")
    return parts


def scenario_chunked(ports, n, rng):
    out = []
    for i in range(n):
        end = i % 2 == 0
        path = b"/sink" if end else b"/sink-open"
        head = b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" % path
        body = chunked_body(rng, 2000 if end else 500, end)
        # Bodies in 16 KiB writes, as a streaming client does.
        blob = b"".join(body)
        out.append(exchange(ports["h1"], [head] + [blob[j:j + 16384] for j in range(0, len(blob), 16384)], timeout=3.0))
    return out


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload, length=None):
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_bomb():
    # A 4 KiB header added to the dynamic table once, then its index (62) 10,000 times.
    first = b"\x40\x01x\x7f\x81\x1f" + b"v" * 4000  # literal with indexing, value length 4000
    refs = b"\xbe" * 10000  # indexed field 62
    block = first + refs
    parts = [block[i:i + 1000] for i in range(0, len(block), 1000)]
    frames = [frame(1, 0, 1, parts[0])]  # HEADERS without END_HEADERS
    frames += [frame(9, 4 if i == len(parts) - 1 else 0, 1, p) for i, p in enumerate(parts[1:], 1)]
    return b"".join(frames)


def h2_cases(rng):
    settings = frame(4, 0, 0, b"")
    base = PREFACE + settings
    cases = [
        base + frame(0, 0, 1, b"", length=0xFFFFFF),  # a DATA frame claiming 16 MiB
        base + frame(1, 4, 1, b"\x82\x86\x84", length=0x4000) + b"\x00" * 10,  # HEADERS longer than sent
        base + frame(1, 5, 1, b"\xff\xff\xff\xff\x0f\xbf\xfe"),  # invalid HPACK indexes
        base + hpack_bomb(),
        base + frame(0xFA, 0, 1, rng.randbytes(100)) + frame(6, 0, 0, b"1234567"),  # unknown type, short PING
        base + frame(8, 0, 0, b"\x00\x00\x00\x00") + frame(0, 1, 0, b"data on stream 0"),
        base + frame(1, 4, 1, b"\x82\x86\x84\x41\x01x", length=2),  # length cutting a header block
        base + frame(1, 0x28, 3, b"\xff" + b"\x00" * 20),  # PADDED and PRIORITY with padding past the end
    ]
    return cases


def scenario_h2_bogus(ports, n, rng):
    fixed = h2_cases(rng)
    out = []
    for i in range(n):
        if i < len(fixed):
            data = fixed[i]
        else:
            data = PREFACE + frame(4, 0, 0, b"") + b"".join(
                frame(rng.randint(0, 12), rng.randint(0, 255), rng.randint(0, 9), rng.randbytes(rng.randint(0, 300)),
                      length=rng.choice([None, None, rng.randint(0, 0xFFFFFF)])) for _ in range(rng.randint(1, 6)))
        out.append(exchange(ports["h2"], [data], timeout=2.0, settle=0.1))
    return out


def h2_canonical(answer):
    """The server's frames with each header block replaced by its length: nginx's blocks carry
    the `date` header (HPACK, Huffman-coded), which differs between runs."""
    out = bytearray()
    i = 0
    while i + 9 <= len(answer):
        n = int.from_bytes(answer[i:i + 3], "big")
        kind = answer[i + 3]
        payload = answer[i + 9:i + 9 + n]
        out += answer[i:i + 9] + (b"<block %d>" % len(payload) if kind in (1, 9) else payload)
        i += 9 + n
    return bytes(out + answer[i:])


def scenario_slowloris(ports, n, rng):
    head = b"GET /ok HTTP/1.1\r\nHost: slow\r\nUser-Agent: slowloris\r\nConnection: close\r\n\r\n"
    out = [None] * n

    def one(i):
        out[i] = exchange(ports["h1"], [head[j:j + 1] for j in range(len(head))], pause=0.02, timeout=5.0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def scenario_paths(ports, n, rng):
    out = []
    per = int(os.environ.get("HOSTILE_PIPELINE", "10"))
    for start in range(0, n, per):
        reqs = b"".join(
            b"GET /hostile/%s%d/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (WORDS[i % 10].encode(), i // 10 % 1000, i)
            for i in range(start, min(n, start + per)))
        reqs += b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out.append(exchange(ports["h1"], [reqs], timeout=5.0))
    return out


def scenario_deep_pipeline(ports, n, rng):
    # 100 requests in one write: past the 2 KiB a transfer's copy holds, the agent cannot know
    # how many there were; it must say so (`uncaptured`), never count wrongly.
    out = []
    for c in range(n):
        reqs = b"".join(b"GET /deep/%d/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (c, i) for i in range(100))
        reqs += b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out.append(exchange(ports["h1"], [reqs], timeout=5.0))
    return out


def scenario_churn(ports, n, rng):
    for i in range(n):
        src = "127.0.%d.%d" % (1 + i // 250 % 200, 1 + i % 250)
        rst(ports["h1"], b"GET /ok HTTP/1.1\r\nHo" if i % 3 == 0 else b"", src=src)
    return []


# (name, function, count at scale 1)
SCENARIOS = [
    ("garbage", scenario_garbage, 2000),
    ("invalid", scenario_invalid, len(INVALID) * 20),
    ("huge_heads", scenario_huge_heads, 64),
    ("chunked", scenario_chunked, 40),
    ("h2_bogus", scenario_h2_bogus, 400),
    ("slowloris", scenario_slowloris, 100),
    ("paths", scenario_paths, 100_000),
    ("deep_pipeline", scenario_deep_pipeline, 20),
    ("churn", scenario_churn, 100_000),
]


def counts(scale):
    # Every scenario runs at least a few times, and the fixed cases at least once each.
    return {name: max(min(base, {"invalid": len(INVALID), "h2_bogus": 8}.get(name, 4)), int(base * scale))
            for name, _, base in SCENARIOS}


def run_scenarios(ports, scale, seed):
    result = {}
    n = counts(scale)
    for name, fn, _ in SCENARIOS:
        rng = random.Random(f"{seed}-{name}")
        start = time.monotonic()
        answers = fn(ports, n[name], rng)
        if name == "h2_bogus":
            answers = [h2_canonical(a) for a in answers]
        digest = hashlib.sha256()
        total = 0
        for a in answers:
            a = DATE.sub(b"", a)
            digest.update(struct.pack(">I", len(a)) + a)
            total += len(a)
        result[name] = {"count": n[name], "answer_bytes": total, "sha256": digest.hexdigest(),
                        "seconds": round(time.monotonic() - start, 1)}
    return result


NGINX_SERVER = """  server {{
    listen 127.0.0.1:{h1};
    listen 127.0.0.1:{h2} http2;
    root {d}/www;
    location = /ok {{ return 200 "ok\\n"; }}
    location = /sink {{ return 200 "sunk\\n"; }}
    location = /sink-open {{ return 200 "sunk\\n"; }}
    location = /close {{ return 204; }}
    location /invalid {{ return 418; }}
    location /deep/ {{ return 404; }}
  }}"""


def scrape(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def series(text, name):
    for line in text.splitlines():
        m = LINE.match(line)
        if m and m.group(1) == name:
            yield dict(LABEL.findall(m.group(2) or "")), float(m.group(3))


def total(text, name, **labels):
    return sum(v for lab, v in series(text, name) if all(lab.get(k) == w for k, w in labels.items()))


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", required=True, help="the beyla binary")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the scenario counts (1.0: 100k paths)")
    ap.add_argument("--seed", default="beyla-hostile")
    ap.add_argument("--json", help="also write the report here")
    ap.add_argument("--rss-bounds", action="store_true",
                    help=f"check the documented bounds of a release build (peak <= {PEAK_RSS_MB} MB, "
                    f"end <= {END_RSS_MB} MB); always checked: growth under the traffic <= {GROWTH_MB} MB")
    args = ap.parse_args()

    d = tempfile.mkdtemp(prefix="beyla-hostile-")
    os.chmod(d, 0o755)  # nginx's worker (nobody) looks under `www`: 404, not 403
    ports = {"h1": free_port(), "h2": free_port()}
    mport = free_port()
    nginx = bench.start_nginx(d, NGINX_SERVER.format(d=d, **ports), ports.values())
    agent = None
    report = {"scale": args.scale, "counts": counts(args.scale), "checks": {}}
    try:
        report["without_agent"] = run_scenarios(ports, args.scale, args.seed)

        cfg = os.path.join(d, "agent.yml")
        with open(cfg, "w") as f:
            f.write(f"open_port: {ports['h1']},{ports['h2']}\nprometheus_export:\n  port: {mport}\n"
                    "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n"
                    "routes:\n  patterns: [/ok, /sink, /sink-open]\n  unmatched: low-cardinality\n")
        log = open(os.path.join(d, "agent.log"), "w")
        agent = subprocess.Popen([args.agent, "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                # nginx's master and its worker both listen.
                if total(scrape(mport, "/internal/metrics"), "beyla_instrumented_processes") >= 2:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit("the agent did not instrument nginx:\n" + open(log.name).read())
            time.sleep(0.2)

        rss = []
        sampling = True
        rss_before = round(status_kb(agent.pid, "VmRSS") / 1024, 1)

        def sample():
            while sampling and agent.poll() is None:
                rss.append(status_kb(agent.pid, "VmRSS"))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        report["with_agent"] = run_scenarios(ports, args.scale, args.seed)
        # Until the agent has decoded what was sent: its counts stop moving.
        last = None
        for _ in range(60):
            time.sleep(0.5)
            now = (scrape(mport, "/metrics").count("\n"), scrape(mport, "/internal/metrics"))
            if now == last:
                break
            last = now
        sampling = False
        sampler.join()

        alive = agent.poll() is None
        m, internal = scrape(mport, "/metrics"), scrape(mport, "/internal/metrics")
        dur = "http_server_request_duration_seconds_count"
        n = report["counts"]
        get = lambda status, prefix: sum(  # noqa: E731
            v for lab, v in series(m, dur) if lab.get("http_request_method") == "GET"
            and lab.get("http_response_status_code") == status and lab.get("http_route", "").startswith(prefix))
        paths_404 = get("404", "/hostile")
        deep_404 = get("404", "/deep")
        ok_200 = total(m, dur, http_request_method="GET", http_response_status_code="200", http_route="/ok")
        sink_200 = total(m, dur, http_request_method="POST", http_response_status_code="200", http_route="/sink")
        report["agent"] = {
            "alive": alive,
            "rss_before_mb": rss_before,
            "rss_peak_mb": round(max(rss + [0]) / 1024, 1),
            "vmhwm_mb": round(status_kb(agent.pid, "VmHWM") / 1024, 1) if alive else None,
            "rss_end_mb": round(status_kb(agent.pid, "VmRSS") / 1024, 1) if alive else None,
            "decode_errors": {lab["reason"]: v for lab, v in series(internal, "beyla_decode_errors_total") if v},
            "events_lost": total(internal, "beyla_ebpf_events_lost_total"),
            "requests": total(m, dur),
            "route_series": len({lab.get("http_route") for lab, _ in series(m, dur)}),
            "paths_404": paths_404,
            "deep_pipeline_404": deep_404,
            "slowloris_200": ok_200,
            "sink_200": sink_200,
            "sink_open_200": total(m, dur, http_request_method="POST", http_route="/sink-open"),
        }
        a = report["agent"]
        checks = report["checks"]
        for name, _, _ in SCENARIOS:
            checks[f"answers identical: {name}"] = (
                report["without_agent"][name]["sha256"] == report["with_agent"][name]["sha256"])
        checks["agent alive"] = alive
        growth = (a["rss_end_mb"] or 1e9) - rss_before
        checks[f"RSS growth under the traffic <= {GROWTH_MB} MB"] = growth <= GROWTH_MB
        if args.rss_bounds:
            checks[f"RSS peak <= {PEAK_RSS_MB} MB"] = max(a["rss_peak_mb"], a["vmhwm_mb"] or 0) <= PEAK_RSS_MB
            checks[f"RSS at the end <= {END_RSS_MB} MB"] = (a["rss_end_mb"] or 1e9) <= END_RSS_MB
        checks["paths: every 404 counted, exactly"] = paths_404 == n["paths"]
        # Deep pipelining: a request past the copy is not seen; each such write is counted once.
        checks["deep pipeline: no more than sent, the loss counted"] = (
            deep_404 <= 100 * n["deep_pipeline"]
            and (deep_404 == 100 * n["deep_pipeline"] or a["decode_errors"].get("uncaptured", 0) >= n["deep_pipeline"]))
        checks["slowloris: every 200 counted, exactly"] = ok_200 == n["slowloris"]
        checks["chunked: every terminated POST counted, exactly"] = sink_200 == (n["chunked"] + 1) // 2
        checks["routes stay few (low-cardinality)"] = a["route_series"] <= 20
        checks["garbage counted as not_http"] = a["decode_errors"].get("not_http", 0) > 0
        checks["no events lost"] = a["events_lost"] == 0
    finally:
        if agent and agent.poll() is None:
            agent.terminate()
            agent.wait(timeout=20)
        os.killpg(nginx.pid, 15)
        nginx.wait(timeout=20)
    report["ok"] = all(report["checks"].values())
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if not report["ok"]:
        print("FAILED: " + ", ".join(k for k, v in report["checks"].items() if not v), file=sys.stderr)
        print("agent log: " + os.path.join(d, "agent.log"), file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
