#!/usr/bin/env python3
"""Soak (issue 23): the agent under hours of mixed load and process churn, sampled for leaks.

Load: the five test apps (Python, Node, Go, Rust, Java; testapps/build.sh) run for the whole
soak, each with a keep-alive client (~40 req/s: /ping, /users/<n>, /error, and a 404 on a new
path now and then, so that route series come and go) and a client opening a connection per
request (~10 req/s). Process churn: every 3 s a new Python or Go service starts on its own port,
gets 20 requests on short connections, is checked (the agent must report exactly 20 for its
service name, within 15 s) and stopped.

Every 5 s: the agent's RSS, open file descriptors, BPF map and link descriptors, threads, the
series on /metrics, events lost. Reported: the RSS slope (least squares, MB per hour) over the
last two thirds of the run, the fd and BPF descriptor counts at the start and end of that
window (the lowest of each half for fds and links), the stable services' /ping and /users/* counts against what was sent (exact), the churned
services counted exactly, events lost.

Checks (exit 1 if one fails): the agent is alive; no event lost; every stable count exact;
every churned service counted exactly; BPF map descriptors unchanged over the window; the lowest
count of BPF link descriptors in the window's second half at most 4 above its first, and of fds
at most 8 above (a churned service holds links and fds until the agent sees it exit, and one is
started every 3 s, so even the lowest sample of a half may hold one: a Go service's probes are a
few links. A leak of one descriptor per churned service would add about one per 3 s between
the halves, 30 or more in a 5-minute run); RSS at the end <= 40 MB with --rss-bounds (a release build); with --minutes >= 30, the RSS
slope <= 2 MB/h.

Usage: bench/soak.py --agent target/release/beyla [--minutes 60] [--json out.json]
Needs root (the agent) and the test apps (testapps/build.sh).
"""
import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# What the churned services alive at the lowest sample of a half may hold (see the docstring).
FDS_SLACK = 8
LINKS_SLACK = 4

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
STABLE = ["python", "node", "go", "rust", "java"]
END_RSS_MB = 40
SLOPE_MB_PER_H = 2.0
PORT_BASE = 19400  # stable apps 19400-19404, churned services 19410-19499


def start_app(lang, port, name):
    launcher = os.path.join(ROOT, "testapps/build", f"run-{lang}")
    if not os.path.exists(launcher):
        raise SystemExit(f"{launcher} missing: run testapps/build.sh first")
    env = dict(os.environ, OTEL_SERVICE_NAME=name)
    p = subprocess.Popen([launcher, str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                         start_new_session=True)
    line = p.stdout.readline().decode()
    if "listening on" not in line:
        raise SystemExit(f"{lang} app on {port} did not start: {line!r}")
    return p


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def request(sock, port, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = sock.recv(4096)
        if not b:
            raise ConnectionError("closed")
        head += b
    head, _, body = head.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split()[1])


def get_once(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
    return int(data.split()[1])


class Load:
    """What the clients sent and got, per service and route kind."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {}
        self.errors = 0

    def add(self, service, kind):
        with self.lock:
            self.sent[(service, kind)] = self.sent.get((service, kind), 0) + 1


def keepalive_client(port, service, load, stop_at, rng):
    sock = None
    while time.monotonic() < stop_at:
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.settimeout(10)
            r = rng.random()
            if r < 0.5:
                request(sock, port, "/ping")
                load.add(service, "ping")
            elif r < 0.9:
                request(sock, port, f"/users/{rng.randint(1, 10**6)}")
                load.add(service, "users")
            elif r < 0.97:
                request(sock, port, "/error")
            else:
                request(sock, port, f"/gone-{rng.randint(1, 10**9):x}")
        except OSError:
            load.errors += 1
            sock = None
        time.sleep(0.025)
    if sock:
        sock.close()


def short_client(port, service, load, stop_at, rng):
    while time.monotonic() < stop_at:
        try:
            get_once(port, "/ping")
            load.add(service, "ping")
        except OSError:
            load.errors += 1
        time.sleep(0.1)


def scrape(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def total(text, name, **labels):
    s = 0.0
    for line in text.splitlines():
        m = LINE.match(line)
        if m and m.group(1) == name:
            lab = dict(LABEL.findall(m.group(2) or ""))
            if all(lab.get(k) == v for k, v in labels.items()):
                s += float(m.group(3))
    return s


def churn(mport, load, stop_at, results, log_path):
    n = 0
    while time.monotonic() + 3 < stop_at:
        started = time.monotonic()
        lang = "python" if n % 2 == 0 else "go"
        name = f"churn-{n}"
        port = PORT_BASE + 10 + n % 90
        p = start_app(lang, port, name)
        try:
            # Its requests count once the agent has attached to it.
            # (Logged once the kernel traces the process: what follows is measured.)
            on = f"Process instrumented. pid={p.pid} "
            deadline = time.monotonic() + 10
            instrumented = False
            while not (instrumented := on in open(log_path, errors="replace").read()) and time.monotonic() < deadline:
                time.sleep(0.1)
            for _ in range(20):
                get_once(port, "/ping")
            sent = time.monotonic()
            got = 0
            while time.monotonic() < sent + 15:
                got = total(scrape(mport, "/metrics"), "http_server_request_duration_seconds_count", service_name=name)
                if got >= 20:
                    break
                time.sleep(0.2)
            results.append({"service": name, "lang": lang, "counted": got, "pid": p.pid,
                            "instrumented_in_time": instrumented,
                            "seconds_to_count": round(time.monotonic() - sent, 1),
                            "at": time.strftime("%H:%M:%S")})
        except OSError:
            load.errors += 1
        finally:
            stop(p)
        n += 1
        time.sleep(max(0.0, 3 - (time.monotonic() - started)))


def proc_sample(pid):
    status = open(f"/proc/{pid}/status").read()
    kb = lambda f: int(re.search(rf"^{f}:\s+(\d+)", status, re.M).group(1))  # noqa: E731
    fds = maps = links = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        fds += 1
        maps += target == "anon_inode:bpf-map"
        links += target == "anon_inode:bpf_link"
    return {"rss_kb": kb("VmRSS"), "hwm_kb": kb("VmHWM"), "threads": kb("Threads"), "fds": fds, "bpf_maps": maps,
            "bpf_links": links}


def slope_per_hour(points):
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if den == 0 else sum((t - mx) * (v - my) for t, v in points) / den * 3600


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", required=True)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--json")
    ap.add_argument("--rss-bounds", action="store_true", help=f"check RSS <= {END_RSS_MB} MB (a release build)")
    args = ap.parse_args()

    d = tempfile.mkdtemp(prefix="beyla-soak-")
    mport = 19399
    apps = {}
    agent = None
    load = Load()
    report = {"minutes": args.minutes, "checks": {}}
    try:
        for i, lang in enumerate(STABLE):
            apps[lang] = start_app(lang, PORT_BASE + i, f"soak-{lang}")
        cfg = os.path.join(d, "agent.yml")
        with open(cfg, "w") as f:
            # A short series TTL, so that series of churned services and paths expire within the run.
            f.write(f"open_port: {PORT_BASE}-{PORT_BASE + 99}\nprometheus_export:\n  port: {mport}\n  ttl: 30s\n"
                    "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n")
        log_path = os.path.join(d, "agent.log")
        agent = subprocess.Popen([args.agent, "--config", cfg], stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                if total(scrape(mport, "/internal/metrics"), "beyla_instrumented_processes") >= len(STABLE):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit("the agent did not instrument the apps:\n" + open(log_path).read())
            time.sleep(0.5)

        start = time.monotonic()
        stop_at = start + args.minutes * 60
        threads = []
        for i, lang in enumerate(STABLE):
            port = PORT_BASE + i
            threads.append(threading.Thread(target=keepalive_client,
                                            args=(port, f"soak-{lang}", load, stop_at, random.Random(i))))
            threads.append(threading.Thread(target=short_client,
                                            args=(port, f"soak-{lang}", load, stop_at, random.Random(100 + i))))
        churned = []
        threads.append(threading.Thread(target=churn, args=(mport, load, stop_at, churned, log_path)))
        for t in threads:
            t.start()
        samples = []
        while time.monotonic() < stop_at and agent.poll() is None:
            s = proc_sample(agent.pid)
            s["t"] = round(time.monotonic() - start, 1)
            m = scrape(mport, "/metrics")
            s["series"] = sum(1 for line in m.splitlines() if line and not line.startswith("#"))
            s["events_lost"] = total(scrape(mport, "/internal/metrics"), "beyla_ebpf_events_lost_total")
            samples.append(s)
            time.sleep(5)
        for t in threads:
            t.join()
        time.sleep(2)
        alive = agent.poll() is None
        m = scrape(mport, "/metrics") if alive else ""
        internal = scrape(mport, "/internal/metrics") if alive else ""

        window = [s for s in samples if s["t"] >= args.minutes * 60 / 3]
        first, last = (window[0], window[-1]) if window else ({}, {})
        # A churned service holds descriptors (links of its probes) until the agent has seen it
        # exit: the lowest count of each half of the window is the base a leak would raise.
        half = len(window) // 2

        def lows(key):
            return [min(s[key] for s in window[:half]), min(s[key] for s in window[half:])] if half else [None, None]
        dur = "http_server_request_duration_seconds_count"
        stable = {}
        for lang in STABLE:
            svc = f"soak-{lang}"
            stable[lang] = {
                "ping_sent": load.sent.get((svc, "ping"), 0),
                "ping_counted": total(m, dur, service_name=svc, http_route="/ping"),
                "users_sent": load.sent.get((svc, "users"), 0),
                "users_counted": total(m, dur, service_name=svc, http_route="/users/*"),
            }
        exact_churn = sum(1 for c in churned if c["counted"] == 20)
        report.update({
            "requests_sent": sum(load.sent.values()) + 20 * len(churned),
            "client_errors": load.errors,
            "rss_mb_first": round(first.get("rss_kb", 0) / 1024, 1),
            "rss_mb_last": round(last.get("rss_kb", 0) / 1024, 1),
            "rss_mb_peak": round(max(s["hwm_kb"] for s in samples) / 1024, 1) if samples else None,
            "rss_slope_mb_per_h": round(slope_per_hour([(s["t"], s["rss_kb"] / 1024) for s in window]), 2),
            "fds_low": lows("fds"),
            "bpf_maps": [first.get("bpf_maps"), last.get("bpf_maps")],
            "bpf_links_low": lows("bpf_links"),
            "series": [first.get("series"), last.get("series")],
            "events_lost": total(internal, "beyla_ebpf_events_lost_total"),
            "stable": stable,
            "churned": len(churned),
            "churned_exact": exact_churn,
            "churned_wrong": [c for c in churned if c["counted"] != 20][:10],
            "samples": samples,
        })
        c = report["checks"]
        c["agent alive"] = alive
        c["no events lost"] = alive and report["events_lost"] == 0
        c["no client errors"] = load.errors == 0
        c["stable services counted exactly"] = all(
            v["ping_sent"] == v["ping_counted"] and v["users_sent"] == v["users_counted"] for v in stable.values())
        c["churned services counted exactly"] = len(churned) > 0 and exact_churn == len(churned)
        c["BPF maps held unchanged"] = bool(window) and first["bpf_maps"] == last["bpf_maps"]
        fds, links = report["fds_low"], report["bpf_links_low"]
        c["fds and BPF links not growing"] = bool(half) and fds[1] <= fds[0] + FDS_SLACK and links[1] <= links[0] + LINKS_SLACK
        if args.rss_bounds:
            c[f"RSS at the end <= {END_RSS_MB} MB"] = report["rss_mb_last"] <= END_RSS_MB
        if args.minutes >= 30:
            c[f"RSS slope <= {SLOPE_MB_PER_H} MB/h"] = report["rss_slope_mb_per_h"] <= SLOPE_MB_PER_H
    finally:
        if agent and agent.poll() is None:
            agent.terminate()
            agent.wait(timeout=30)
        for p in apps.values():
            stop(p)
    report["ok"] = all(report["checks"].values())
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    brief = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(brief, indent=1))
    if not report["ok"]:
        print("FAILED: " + ", ".join(k for k, v in report["checks"].items() if not v), file=sys.stderr)
        print(f"agent log: {d}/agent.log", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
