#!/usr/bin/env python3
"""Overhead of the agent on HTTPS: Debian's nginx (one worker) serving a 1 KiB file over HTTPS
and, for comparison, over cleartext HTTP, and our hyper-on-tokio-rustls app (testapps/rust-https,
2 workers) answering /ping over HTTPS, loaded by wrk (keep-alive), runs without and with the
agent alternated (A B A B ...) so that machine drift cancels. With the agent, the OpenSSL probes
read nginx's plaintext and the rustls probes the Rust app's (docs/architecture.md).

  sudo python3 bench/tls.py [--pairs 3] [--secs 8] [--conns 16]

Prints each run, then per scheme the median throughput without and with the agent and their
ratio, p99 latency with and without, requests the agent decoded per request served (1.00: none
lost), and from bpf_stats the BPF programs' runs per request: the TLS uprobes (`ssl_*`, `rtls_*`,
each run is a trap into the kernel) and all programs, with their nanoseconds per request. Uses
bench.py's agent helper and the release build (cargo build --release -p beyla).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def start_nginx(d, https, http):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.makedirs(os.path.join(d, "www"), exist_ok=True)
    with open(os.path.join(d, "www", "ping"), "w") as f:
        f.write("x" * 1024)
    server = f"""  server {{
    listen 127.0.0.1:{https} ssl;
    listen 127.0.0.1:{http};
    root {d}/www;
    ssl_certificate {cert};
    ssl_certificate_key {key};
  }}"""
    return bench.start_nginx(d, server, [https, http], worker_connections=256)


def wrk(url, secs, conns):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{int(secs)}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    p99_us = float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else float("nan")
    if re.search(r"Socket errors|Non-2xx", out):
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return rps, n, p99_us


def decoded(agent):
    return bench.metric_sum(agent.internal(), "beyla_decoded_requests_total", side="server")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--conns", type=int, default=16)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/tls.py: the agent loads BPF programs: run as root")
    bench.OUT = tempfile.mkdtemp(prefix="beyla-tls-")
    https, http = bench.free_port(), bench.free_port()
    d = tempfile.mkdtemp(prefix="beyla-tls-nginx-")
    os.chmod(d, 0o755)  # nginx's worker runs as another user
    nginx = start_nginx(d, https, http)
    rport = bench.free_port()
    rust_env = dict(os.environ, TLS_CERT=os.path.join(d, "cert.pem"), TLS_KEY=os.path.join(d, "key.pem"))
    rust = subprocess.Popen([os.path.join(bench.REPO, "testapps/build/rust-https"), str(rport)], env=rust_env,
                            stdout=subprocess.DEVNULL)
    bench.wait_port(rport)
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    urls = {"https": f"https://127.0.0.1:{https}/ping", "http": f"http://127.0.0.1:{http}/ping",
            "rustls": f"https://127.0.0.1:{rport}/ping"}
    rows = {(s, w): [] for s in urls for w in (False, True)}
    per_req = {s: [] for s in urls}
    try:
        for url in urls.values():
            wrk(url, 2, a.conns)  # warm-up
        for pair in range(a.pairs):
            for scheme, url in urls.items():
                for with_agent in (False, True):
                    agent = None
                    if with_agent:
                        agent = bench.Agent([("nginx", f"{https},{http}"), ("rusttls", f"{rport}")], 3, tag="tls")
                        end = time.time() + 30
                        while bench.metric_sum(agent.internal(), "beyla_instrumented_tls_processes") < 3:
                            if time.time() > end:
                                raise RuntimeError("TLS probes not attached to nginx's 2 processes and rust-https")
                            time.sleep(0.2)
                    try:
                        if agent:
                            before, (ns0, _, per0) = decoded(agent), bench.bpf_stats(agent.pid)
                        rps, n, p99 = wrk(url, a.secs, a.conns)
                        if agent:
                            time.sleep(2)
                            ns1, _, per1 = bench.bpf_stats(agent.pid)
                            ssl_runs = sum(c - per0.get(k, (0, 0))[1] for k, (_, c) in per1.items()
                                           if k.startswith(("ssl_", "rtls_")))
                            all_runs = sum(c - per0.get(k, (0, 0))[1] for k, (_, c) in per1.items())
                            per_req[scheme].append(((decoded(agent) - before) / n, ssl_runs / n, all_runs / n,
                                                    (ns1 - ns0) / n))
                    finally:
                        if agent:
                            agent.stop()
                    rows[(scheme, with_agent)].append((rps, p99))
                    print(f"pair {pair} {scheme} agent={with_agent}: {rps:.0f} req/s, p99 {p99:.0f} us", flush=True)
    finally:
        nginx.terminate()
        nginx.wait()
        rust.terminate()
        rust.wait()
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=False)
    for scheme in urls:
        base = statistics.median(r[0] for r in rows[(scheme, False)])
        wa = statistics.median(r[0] for r in rows[(scheme, True)])
        p99b = statistics.median(r[1] for r in rows[(scheme, False)])
        p99a = statistics.median(r[1] for r in rows[(scheme, True)])
        cols = [statistics.median(x[i] for x in per_req[scheme]) for i in range(4)]
        print(f"{scheme}: median {base:.0f} req/s without, {wa:.0f} with the agent: ratio {wa / base:.3f}; "
              f"p99 {p99b:.0f} -> {p99a:.0f} us; decoded per request {cols[0]:.2f}; "
              f"TLS probe runs per request {cols[1]:.2f}; BPF runs per request {cols[2]:.2f}, "
              f"{cols[3]:.0f} ns", flush=True)


if __name__ == "__main__":
    main()
