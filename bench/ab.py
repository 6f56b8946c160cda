#!/usr/bin/env python3
"""Two agent binaries against each other, alternated in one run (A B A B ...), so that machine
drift cancels: the rust test app at saturation under wrk, each run with a fresh agent.

  sudo python3 bench/ab.py OLD_BEYLA NEW_BEYLA [--pairs 4] [--secs 8] [--app rust]

Prints per run req/s, the agent's CPU per 10k requests (per-thread schedstat) and its BPF time
per request (bpf_stats), then the medians and the ratio NEW/OLD of each. Uses bench.py's
helpers; build the test apps first (bench/run or testapps/build.sh).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--app", default="rust")
    ap.add_argument("--conns", type=int, default=32)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/ab.py: the agent loads BPF programs: run as root")
    bench.OUT = tempfile.mkdtemp(prefix="beyla-ab-")
    bench.P = dict(bench.FULL)
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    port = bench.free_port()
    app = bench.App(bench.app_kind(a.app), port, extra=a.app)
    load = lambda: bench.wrk(port, a.secs, a.conns)  # noqa: E731
    rows = {a.old: [], a.new: []}
    try:
        load()  # warm-up
        for pair in range(a.pairs):
            for binary in (a.old, a.new):
                bench.AGENT = binary
                agent = bench.bench_agent(a.app, port=port)
                try:
                    res, cost = bench.measured_run([app], agent, load)
                finally:
                    agent.stop()
                row = (res["rps"], cost["agent_cpu_s_per_10k"], cost["bpf_ns_per_req"])
                rows[binary].append(row)
                print(f"pair {pair} {binary}: {row[0]:.0f} req/s, agent {row[1]:.4f} CPU s/10k req, "
                      f"BPF {row[2]:.0f} ns/req", flush=True)
    finally:
        app.stop()
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=False)
    med = {b: [statistics.median(r[i] for r in rs) for i in range(3)] for b, rs in rows.items()}
    for b in (a.old, a.new):
        print(f"median {b}: {med[b][0]:.0f} req/s, agent {med[b][1]:.4f} CPU s/10k req, BPF {med[b][2]:.0f} ns/req")
    names = ("req/s", "agent CPU per request", "BPF per request")
    print("new/old: " + ", ".join(f"{n} {med[a.new][i] / med[a.old][i]:.3f}" for i, n in enumerate(names)))


if __name__ == "__main__":
    main()
