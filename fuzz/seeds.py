#!/usr/bin/env python3
"""Cuts the decode fixtures (agent/tests/fixtures/decode/<proto>/*.events, see
agent/src/decode/fixture.rs) into seed inputs for the fuzz targets, in the formats their
sources describe, under fuzz/corpus/<target>/, plus go_inspect's patch records and procfs's
/proc and cgroup samples (captured once, below). Deterministic: rerunning it rewrites the same
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


# go_inspect's regions, by index (REGIONS in fuzz/fuzz_targets/go_inspect.rs).
GO_REGIONS = [
    "file", "elf_header", "program_headers", "section_headers", ".shstrtab", ".go.buildinfo",
    ".gopclntab header", ".gopclntab funcnametab", ".gopclntab functab", ".gopclntab probed entries",
    ".gopclntab", ".debug_info", ".debug_info probed structs", ".debug_abbrev", ".debug_line",
    ".debug_str", ".symtab", ".strtab", ".symtab probed entries", "probed code", "probed prologues",
]
NO_DWARF, NO_SYMTAB, NO_SECTIONS, TYPES_UNIT = 4, 8, 16, 32
GO_MAGIC = b"\xff Go buildinf:"


def rec(op, region, offset, payload=b"", n=None):
    """One patch record: op "write" (the payload), "fill" (n copies of the payload's byte),
    "set" (an integer: n % 4 picks the width 1, 2, 4 or 8; 8-byte payload), "add" (4-byte
    signed payload, n as for "set"), "truncate"."""
    op = ["write", "fill", "set", "add", "truncate"].index(op)
    if n is None:
        n = len(payload)
    return struct.pack("<BBIB", op, GO_REGIONS.index(region), offset, n) + payload


def width(w):
    return [1, 2, 4, 8].index(w)


def pclntab_table(magic):
    """A two-function table: go1.16 (absolute 8-byte entries) or go1.18+ (4-byte offsets from
    text_start 0x401000)."""
    go116 = magic == 0xFFFFFFFA
    field = 8 if go116 else 4
    names_at = 8 + 8 * 8
    names = b"runtime.main\0net/http.serverHandler.ServeHTTP\0"
    functab_at = names_at + len(names)
    funcs_at = 2 * 2 * field + field  # after the two pairs and the end entry
    if go116:
        words = [2, 0, names_at, 0, 0, 0, functab_at, 0]
    else:
        words = [2, 0, 0x401000, names_at, 0, 0, 0, functab_at]
    t = struct.pack("<IBBBB", magic, 0, 0, 1, 8) + b"".join(struct.pack("<Q", w) for w in words) + names
    fmt = "<Q" if go116 else "<I"
    base = 0x401000 if go116 else 0
    entries = [(base, funcs_at, 0), (base + 0x40, funcs_at + 16, 13)]
    for entry, fo, _ in entries:
        t += struct.pack(fmt, entry) + struct.pack(fmt, fo)
    t += struct.pack(fmt, base + 0x90)
    for entry, _, noff in entries:
        t += (struct.pack(fmt, entry) + struct.pack("<i", noff)).ljust(16, b"\0")
    return t


def go_inspect(_all_fixtures):
    """Patch records on the base Go executable, one or two per region, under the variant that
    reaches the reader each aims at; then raw inputs for the other modes."""
    c = Corpus("go_inspect")
    for variant in (0, NO_DWARF, NO_SYMTAB, NO_DWARF | NO_SYMTAB, NO_SECTIONS, TYPES_UNIT):
        c.add("base", bytes([variant]))
    fast = NO_DWARF  # skips the DWARF walk where it is not the target
    types = TYPES_UNIT  # the DWARF of the unit with the probed structs only
    q = lambda v: struct.pack("<Q", v)  # noqa: E731
    seeds = [
        ("elf-phnum", fast, rec("set", "elf_header", 0x38, q(0xFFFF), width(2))),
        ("elf-shstrndx", fast, rec("set", "elf_header", 0x3E, q(1), width(2))),
        ("phdr-vaddr", fast, rec("add", "program_headers", 3 * 56 + 16, struct.pack("<i", 0x1000), width(8))),
        ("phdr-filesz", fast, rec("set", "program_headers", 3 * 56 + 32, q(2**64 - 1), width(8))),
        ("shdr-offset", fast, rec("set", "section_headers", 15 * 64 + 0x18, q(2**63), width(8))),
        ("shdr-size", fast, rec("add", "section_headers", 16 * 64 + 0x20, struct.pack("<i", -16), width(8))),
        ("shstrtab", fast, rec("write", ".shstrtab", 1, b"x")),
        ("buildinfo-ptrsize", fast, rec("write", ".go.buildinfo", 14, b"\x08\x00")),
        ("buildinfo-varint", fast, rec("fill", ".go.buildinfo", 32, b"\xff", 11)),
        ("buildinfo-modinfo", fast, rec("write", ".go.buildinfo", 48, b"dep\tgoogle.golang.org/grpc\tv1.33.3\n")),
        ("pclntab-nfunc", fast | NO_SYMTAB, rec("set", ".gopclntab header", 8, q(2**62), width(8))),
        ("pclntab-offset", fast | NO_SYMTAB, rec("set", ".gopclntab header", 8 + 7 * 8, q(2**64 - 8), width(8))),
        ("pclntab-magic", fast | NO_SYMTAB, rec("write", ".gopclntab header", 0, b"\xfa\xff\xff\xff")),
        ("funcnametab", fast | NO_SYMTAB, rec("fill", ".gopclntab funcnametab", 0x100, b"\0", 64)),
        ("functab", fast | NO_SYMTAB, rec("add", ".gopclntab functab", 8 * 100 + 4, struct.pack("<i", 1 << 20), width(4))),
        ("pclntab-probed", fast | NO_SYMTAB, rec("fill", ".gopclntab probed entries", 4, b"\xff", 4)),
        ("pclntab-whole", fast | NO_SYMTAB, rec("fill", ".gopclntab", 0x10000, b"\0", 255)),
        ("pclntab-scan", NO_SECTIONS, rec("write", ".gopclntab header", 7, b"\x04")),
        ("debug-info-unit", 0, rec("fill", ".debug_info", 0, b"\xff", 4)),
        ("debug-info-version", types, rec("set", ".debug_info", 0x90B33 + 4, q(7), width(2))),
        ("debug-info-structs", types, rec("fill", ".debug_info probed structs", 20, b"\x80", 8)),
        ("debug-info-member", types, rec("set", ".debug_info probed structs", 38, q(2**63), width(8))),
        ("debug-abbrev", types, rec("write", ".debug_abbrev", 3, b"\x0e\0")),
        ("debug-line", 0, rec("fill", ".debug_line", 0, b"\xff", 8)),
        ("debug-str", 0, rec("fill", ".debug_str", 0, b"\xff", 8)),
        ("debug-truncated", 0, rec("truncate", ".debug_info", 0x10000)),
        ("symtab", fast, rec("fill", ".symtab", 24 * 100, b"\xff", 24)),
        ("strtab", fast, rec("fill", ".strtab", 1, b"\0", 200)),
        ("symtab-value", fast, rec("set", ".symtab probed entries", 8, q(2**64 - 16), width(8))),
        ("symtab-size", fast, rec("set", ".symtab probed entries", 16, q(2**40), width(8))),
        ("code-ret", fast, rec("fill", "probed code", 64, b"\xc3", 16)),
        ("prologue", fast, rec("fill", "probed prologues", 0, b"\x90", 12)),
        ("truncated", fast, rec("truncate", "file", 0x4B7010)),
        ("two-records", fast, rec("write", ".go.buildinfo", 32, b"\x08go1.23.5") + rec("fill", "probed prologues", 4, b"\xcc", 2)),
    ]
    for name, variant, records in seeds:
        c.add(name, bytes([variant]) + records)

    # Mode 1: .go.buildinfo blobs, go1.18+ inline strings and the older pointers (into the
    # input itself: address 0 is its first byte after the mode).
    mod = (b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6"
           b"path\texample.com/app\nmod\texample.com/app\t(devel)\t\n"
           b"dep\tgoogle.golang.org/grpc\tv1.60.1\th1:x=\n=>\t../grpc\t(devel)\t\n"
           b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2")
    inline = GO_MAGIC + b"\x08\x02" + bytes(16) + b"\x08go1.21.3" + bytes([len(mod) & 0x7F | 0x80, len(mod) >> 7]) + mod
    c.add("buildinfo", b"\x01" + inline)
    # Header (32 bytes) pointing at two string headers (at 32, 48), then the strings (64, 80).
    pointers = GO_MAGIC + b"\x08\x00" + struct.pack("<QQ", 32, 48) + struct.pack("<QQQQ", 64, 9, 80, len(mod))
    c.add("buildinfo", b"\x01" + pointers + b"go1.16.15".ljust(16, b"\0") + mod)
    # Mode 2: pclntab function tables (bit 2: text_start given).
    c.add("pclntab", b"\x02" + pclntab_table(0xFFFFFFFA))
    c.add("pclntab", b"\x06" + pclntab_table(0xFFFFFFF0))
    c.add("pclntab", b"\x02" + pclntab_table(0xFFFFFFF1))
    # Mode 3: x86-64 code (a Go prologue with its stack check, a call, returns), and with bit 2
    # a minimal ELF (one PT_LOAD, no sections) carrying a build info blob.
    code = bytes.fromhex("493b6610" "0f8610000000" "4883ec50" "e800000000" "4883c450" "c3" "cccc")
    c.add("code", b"\x03" + code)
    elf = b"\x7fELF\x02\x01\x01" + bytes(9)
    elf += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x401000, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    elf += struct.pack("<IIQQQQQQ", 1, 6, 0, 0x400000, 0x400000, 0x100, 0x100, 0x1000)
    elf = elf.ljust(128, b"\0") + GO_MAGIC + b"\x08\x02" + bytes(16) + b"\x08go1.21.3\0"
    c.add("elf", b"\x07" + elf)


# procfs's samples, by parser (the first byte of each seed). Captured on this project's machine
# (2026-12-07, cgroup v1 plus the v2 line): the stat of cat (/proc/self), of kthreadd and of a
# copy of sleep named "a) (b" (and its cmdline); a Python process listening on 127.0.0.1:8080
# and [::]:8081 with a connection to each (its /proc/<pid>/net/tcp{,6} without the machine's
# other sockets, its fd and ns links; its interpreter path shortened); the machine's cgroup
# file with its one id replaced. Environments are made up; the other cgroup lines follow
# kube/cgroup.rs's unit tests, with ids of their own.
STAT, CMDLINE, ENVIRON, RESOURCE, NET_TCP, SOCKET, NS, EXE, CGROUP, CGROUP_PATH = range(10)
PROC_TCP = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    "                                                     \n"
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 412288 1"
    " 00000000be770a70 100 0 0 10 0                    \n"
    "   1: 0100007F:1F90 0100007F:8B1C 01 00000000:00000000 00:00000000 00000000     0        0 412291 1"
    " 00000000f02edfa1 20 0 0 10 -1                    \n"
    "   2: 0100007F:8B1C 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 412290 2"
    " 00000000c9c6d740 20 0 0 10 -1                    \n"
)
PROC_TCP6 = (
    "  sl  local_address                         remote_address                        st tx_queue rx_queue tr"
    " tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000"
    " 00:00000000 00000000     0        0 412289 1 000000000226872d 100 0 0 10 0\n"
    "   1: 00000000000000000000000001000000:ABEA 00000000000000000000000001000000:1F91 01 00000000:00000000"
    " 00:00000000 00000000     0        0 412292 2 00000000a8b10e40 20 0 0 10 -1\n"
    "   2: 00000000000000000000000001000000:1F91 00000000000000000000000001000000:ABEA 01 00000000:00000000"
    " 00:00000000 00000000     0        0 412293 1 000000005aa7f230 20 0 0 10 -1\n"
)
PROC_SAMPLES = [
    (STAT, "self", b"24875 (cat) R 24873 24873 17798 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 1254925 3133440 393"
     b" 18446744073709551615 94102545756160 94102545776041 140735548881600 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
     b" 94102545792048 94102545793664 94103188824064 140735548889826 140735548889846 140735548889846"
     b" 140735548891115 0\n"),
    (STAT, "parens", b"24921 (a) (b) S 1 24916 17798 0 -1 4194304 136 0 0 0 0 0 0 0 20 0 1 0 1255361 2990080 419"
     b" 18446744073709551615 94489424683008 94489424700937 140734791372016 0 0 0 0 6 0 1 0 0 17 1 0 0 0 0 0"
     b" 94489424715024 94489424716288 94490123608064 140734791379695 140734791379706 140734791379706"
     b" 140734791380976 0\n"),
    (STAT, "kthread", b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 1 0 0 20 0 1 0 25 0 0 18446744073709551615"
     b" 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"),
    (CMDLINE, "python", b"/usr/bin/python3\0-\0"),
    (CMDLINE, "parens", b"./a) (b\x0030\0"),
    (CMDLINE, "title", b"gunicorn: master [app:app]"),
    (ENVIRON, "otel", b"PATH=/usr/local/bin:/usr/bin:/bin\0HOME=/home/app\0LANG=C.UTF-8\0OTEL_SERVICE_NAME=checkout\0"
     b"OTEL_RESOURCE_ATTRIBUTES=service.namespace=shop%2Feu,deployment.environment=prod\0"),
    (ENVIRON, "attrs", b"OTEL_RESOURCE_ATTRIBUTES= service.name = cart , k8s.pod.name=cart-7d9f%zz\0PWD=/srv\0"),
    (ENVIRON, "sdk", b"JAVA_TOOL_OPTIONS=-javaagent:/otel/opentelemetry-javaagent.jar\0"
     b"NODE_OPTIONS=--require @opentelemetry/auto-instrumentations-node/register\0"
     b"CORECLR_PROFILER={918728DD-259F-4A6A-AC2B-B85E1B658318}\0OTEL_DOTNET_AUTO_HOME=/otel\0"),
    (RESOURCE, "attrs", b"service.name=cart,service.namespace=shop%2Feu,junk,=2,b=x%3Dy%"),
    (NET_TCP, "tcp", PROC_TCP.encode()),
    (NET_TCP, "tcp6", PROC_TCP6.encode()),
    (SOCKET, "socket", b"socket:[412288]"),
    (SOCKET, "pipe", b"pipe:[412290]"),
    (NS, "mnt", b"mnt:[4026531832]"),
    (NS, "net", b"net:[4026531833]"),
    (EXE, "deleted", b"/usr/bin/python3.11 (deleted)"),
    (EXE, "parens", b"/tmp/a) (b"),
]
CID = "8e3b1f0c2d4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c"
UID = "3c2b1a09-8f7e-4d6c-9b5a-0e1f2a3b4c5d"
U_ = UID.replace("-", "_")
CGROUP_SAMPLES = [
    ("machine", "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
     "4:memory:/process_api/02c96450313ab408b2e4c80cd137ae58\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"),
    ("docker-v1", f"13:pids:/docker/{CID}\n12:memory:/docker/{CID}\n0::/\n"),
    ("docker-v2", f"0::/system.slice/docker-{CID}.scope\n"),
    ("containerd-systemd",
     f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice/cri-containerd-{CID}.scope\n"),
    ("crio-systemd",
     f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/crio-{CID}.scope\n"),
    ("crio-conmon",
     f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/crio-conmon-{CID}.scope\n"),
    ("cgroupfs-v1", f"12:pids:/kubepods/besteffort/pod{UID}/{CID}\n4:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{CID}\n"
     f"1:name=systemd:/kubepods/besteffort/pod{UID}/{CID}\n0::/\n"),
    ("cgroupfs-guaranteed", f"0::/kubepods/pod{UID}/{CID}\n"),
    ("podman", f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/container\n"),
    ("kind", f"0::/system.slice/docker-{'a' * 64}.scope/kubelet.slice/kubelet-kubepods.slice/"
     f"kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{U_}.slice/cri-containerd-{CID}.scope\n"),
]


def procfs(_all_fixtures):
    c = Corpus("procfs")
    for parser, name, raw in PROC_SAMPLES:
        c.add(name, bytes([parser]) + raw)
    for name, text in CGROUP_SAMPLES:
        c.add("cgroup-" + name, bytes([CGROUP]) + text.encode())
        path = [line for line in text.splitlines() if not line.endswith(":/")][0].split(":", 2)[2]
        c.add("path-" + name, bytes([CGROUP_PATH]) + path.encode())


def main():
    all_fixtures = list(fixtures())
    for make in (http1, http2, tracker, traceparent, config, go_inspect, procfs):
        make(all_fixtures)
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
