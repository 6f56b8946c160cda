#!/usr/bin/env python3
"""Cuts the decode fixtures (agent/tests/fixtures/decode/<proto>/*.events, see
agent/src/decode/fixture.rs) into seed inputs for the fuzz targets, in the formats their
sources describe, under fuzz/corpus/<target>/. Deterministic: rerunning it rewrites the same
files. Usage: fuzz/seeds.py [repo root]"""
import hashlib
import os
import re
import struct
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "agent/tests/fixtures/decode")
CORPUS = os.path.join(ROOT, "fuzz/corpus")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_SEED = 16 * 1024


def unescape(s):
    if s == "-":
        return b""
    return re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), s.encode("latin-1"))


def events(path):
    out = []
    for line in open(path, encoding="latin-1"):
        f = line.rstrip("\n").split(" ")
        if f[0] == "data":
            out.append({
                "kind": "data", "pid": int(f[1]), "tid": int(f[2]), "sock": int(f[3]),
                "send": f[6] == "send", "len": int(f[7]), "tls": f[10] == "1",
                "data": unescape(f[11]), "tail": unescape(f[12]),
                "capture": {"h2frames": 1, "h2lost": 2}.get(f[13] if len(f) > 13 else "", 0),
            })
        elif f[0] == "close":
            out.append({"kind": "close", "pid": int(f[1]), "sock": int(f[2])})
    return out


def fixtures():
    for proto in sorted(os.listdir(FIXTURES)):
        for name in sorted(os.listdir(os.path.join(FIXTURES, proto))):
            if name.endswith(".events"):
                yield proto, name[: -len(".events")], events(os.path.join(FIXTURES, proto, name))


class Corpus:
    def __init__(self, target):
        self.dir = os.path.join(CORPUS, target)
        os.makedirs(self.dir, exist_ok=True)
        for f in os.listdir(self.dir):
            os.remove(os.path.join(self.dir, f))
        self.seen = set()

    def add(self, name, data):
        digest = hashlib.sha1(data).hexdigest()
        if not data or digest in self.seen:
            return
        self.seen.add(digest)
        with open(os.path.join(self.dir, f"{name}-{digest[:8]}"), "wb") as f:
            f.write(data)


def http1(all_fixtures):
    c = Corpus("http1_parse")
    for proto, case, evs in all_fixtures:
        if proto != "http1":
            continue
        n = 0
        for e in evs:
            d = e.get("data", b"")
            if e["kind"] == "data" and e["capture"] == 0 and (d[:5] == b"HTTP/" or re.match(rb"[A-Z]+ ", d)):
                # Control byte 0 (one whole span), then a few cut patterns over the same bytes.
                c.add(case, b"\x00" + d[:4096])
                if b"chunked" in d.lower() and n < 8:
                    c.add(case, b"\x2a" + d[:4096])
                    n += 1
    # The chunked walker on its own: bodies cut as the connection code would feed them.
    c.add("chunked", b"\x00HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n")
    c.add("chunked", b"\x07HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n" + b"a" * 26 + b"\r\n0\r\n\r\n")


def traceparent(all_fixtures):
    c = Corpus("traceparent")
    for _, case, evs in all_fixtures:
        for e in evs:
            for m in re.finditer(rb"(?i)traceparent: ?([^\r\n]*)", e.get("data", b"")):
                c.add(case, m.group(1))
    c.add("w3c", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    c.add("w3c", b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra")
    c.add("w3c", b" 00-00000000000000000000000000000000-00f067aa0ba902b7-01 ")


def http2(all_fixtures):
    """One seed per socket that carries the client preface (sent or received): its transfers as
    records, from that side's point of view, the preface cut off (the target feeds it)."""
    c = Corpus("http2_frames")
    for proto, case, evs in all_fixtures:
        if proto != "http2":
            continue
        socks = {}
        for e in evs:
            if e["kind"] == "data":
                socks.setdefault((e["pid"], e["sock"]), []).append(e)
        for key, sevs in socks.items():
            first = next((e for e in sevs if e["data"].startswith(PREFACE)), None)
            if first is None:
                continue
            client_sends = first["send"]
            out, preface_cut = b"", False
            for e in sevs:
                if e["capture"] == 2:
                    break
                request = e["send"] == client_sends
                d = e["data"]
                if request and not preface_cut:
                    if not d.startswith(PREFACE):
                        continue
                    d, preface_cut = d[len(PREFACE):], True
                frames = e["capture"] == 1
                missing = 0 if frames else max(0, e["len"] - len(e["data"]))
                flags = (1 if request else 0) | (2 if frames else 0) | ((e["tid"] & 0x3F) << 2)
                rec = struct.pack("<BHH", flags, min(missing, 0xFFFF), len(d)) + d
                if len(out) + len(rec) > MAX_SEED:
                    break
                out += rec
            c.add(case, out)


def tracker(all_fixtures):
    """Each fixture's events as records: its first 4 sockets of each of its first 2 processes
    (in the order seen), then the next 4, and so on; each seed at most 16 KiB."""
    c = Corpus("tracker")
    for _, case, evs in all_fixtures:
        pids = []
        for e in evs:
            if e["pid"] not in pids:
                pids.append(e["pid"])
        pids = pids[:2]
        socks = {p: [] for p in pids}
        for e in evs:
            if e["pid"] in socks and e["sock"] not in socks[e["pid"]]:
                socks[e["pid"]].append(e["sock"])
        rounds = max(len(s) for s in socks.values())
        for r in range(0, min(rounds, 24), 4):
            slot = {(p, s): i for p in pids for i, s in enumerate(socks[p][r:r + 4])}
            out = b""
            for e in evs:
                k = (e["pid"], e["sock"])
                if k not in slot:
                    continue
                flags = (slot[k] << 4) | (pids.index(e["pid"]) << 6)
                if e["kind"] == "close":
                    rec = struct.pack("<BBBB", flags | 6, 0, 0, 0)
                else:
                    extra = max(0, e["len"] - len(e["data"]))
                    xb = extra if extra < 0x80 else 0x80 | min(0x7F, (extra + 255) >> 8)
                    tail = e["tail"][:8] if extra else b""
                    flags |= (1 if e["send"] else 0) | (e["capture"] << 1) | (8 if e["tls"] else 0)
                    rec = struct.pack("<BBBBH", flags, xb, len(tail), e["tid"] & 3, len(e["data"])) + e["data"] + tail
                if len(out) + len(rec) > MAX_SEED:
                    break
                out += rec
            c.add(case, out)


def config(_all_fixtures):
    """Beyla's documented configurations (YAML, mode byte 0) and a few environments (mode 1)."""
    c = Corpus("config")
    docs = os.path.join(ROOT, "agent/tests/fixtures/beyla-doc-configs")
    for name in sorted(os.listdir(docs)):
        if name.endswith(".yml"):
            c.add("doc", b"\x00" + open(os.path.join(docs, name), "rb").read())
    c.add("bad", b"\x00prometheus_export:\n  port: abc\n  pathh: /m\ndiscovery:\n  instrument:\n    - open_ports: 80\n      nmae: x\n    - 7\n")
    c.add("env", b"\x01BEYLA_OPEN_PORT=8080\nBEYLA_PROMETHEUS_PORT=9400\nOTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318\n")
    c.add("env", b"\x01BEYLA_BPF_BATCH_LENGTH=0\nBEYLA_TRACE_PRINTER=loud\nOTEL_METRIC_EXPORT_INTERVAL=x\n")


def main():
    all_fixtures = list(fixtures())
    for make in (http1, http2, tracker, traceparent, config):
        make(all_fixtures)
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
