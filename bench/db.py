#!/usr/bin/env python3
"""Overhead of the agent on databases: Debian's `redis-benchmark` against `redis-server`
(no pipelining) and `pgbench -S` (select-only) against PostgreSQL, each server started here on
a free port, runs without and with the agent alternated (A B A B ...) so that machine drift
cancels. The agent instruments the database server itself (by its port; PostgreSQL's
backends are traced from their fork), so every command of the benchmark is decoded.

  sudo python3 bench/db.py [--pairs 3] [--secs 8] [--only redis|pgbench]

Prints each run's throughput, the medians, the ratio with/without, and the operations the
agent decoded per operation the benchmark reported (1.00: none lost). Uses bench.py's agent
helper and the release build (cargo build --release -p beyla).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def decoded(agent):
    return bench.metric_sum(agent.internal(), "beyla_decoded_requests_total", side="server")


class Redis:
    name = "redis-benchmark (GET/SET, 50 clients, no pipelining)"

    def __init__(self, port, dirname):
        self.port = port
        self.p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", dirname], stdout=subprocess.DEVNULL)
        bench.wait_port(port)

    def run(self, secs):
        # redis-benchmark runs a number of requests: sized from a probe to last about secs.
        n = getattr(self, "n", 20000)
        t0 = time.time()
        out = subprocess.run(["redis-benchmark", "-p", str(self.port), "-t", "get,set", "-c", "50", "-n", str(n),
                              "--csv"], capture_output=True, text=True, check=True).stdout
        took = time.time() - t0
        if not hasattr(self, "n"):
            self.n = max(20000, int(n * secs / 2 / max(took, 0.1)))
            return self.run(secs)
        rps = [float(m.group(1)) for m in re.finditer(r'^"(?:SET|GET)","([0-9.]+)"', out, re.M)]
        return statistics.mean(rps), 2 * n

    def stop(self):
        self.p.terminate()
        self.p.wait()


class Pgbench:
    name = "pgbench -S (select-only, 8 clients, simple protocol)"

    def __init__(self, port, dirname):
        self.port = port
        bindir = sorted(os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql"))[-1]
        self.bin = bindir
        shutil.chown(dirname, "postgres")
        as_pg = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        subprocess.run(as_pg + [f"{bindir}/initdb", "-D", f"{dirname}/data", "-U", "postgres", "--auth=trust"],
                       check=True, capture_output=True)
        self.p = subprocess.Popen(as_pg + [f"{bindir}/postgres", "-D", f"{dirname}/data", "-p", str(port),
                                           "-c", "listen_addresses=127.0.0.1", "-k", dirname],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bench.wait_port(port)
        time.sleep(1)
        subprocess.run([f"{bindir}/pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "postgres"], check=True, capture_output=True)

    def run(self, secs):
        out = subprocess.run([f"{self.bin}/pgbench", "-S", "-c", "8", "-j", "2", "-T", str(secs), "-h", "127.0.0.1",
                              "-p", str(self.port), "-U", "postgres", "postgres"],
                             capture_output=True, text=True, check=True).stdout
        tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
        done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
        return tps, done

    def stop(self):
        self.p.terminate()
        self.p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--only", choices=["redis", "pgbench"])
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/db.py: the agent loads BPF programs, and PostgreSQL runs as user postgres: run as root")
    bench.OUT = tempfile.mkdtemp(prefix="beyla-db-")
    kinds = [k for k in (Redis, Pgbench) if a.only in (None, {Redis: "redis", Pgbench: "pgbench"}[k])]
    for kind in kinds:
        port = bench.free_port()
        d = tempfile.mkdtemp(prefix="beyla-db-server-")
        os.chmod(d, 0o755)
        server = kind(port, d)
        rows = {False: [], True: []}
        lost = []
        try:
            server.run(a.secs)  # warm-up (and, for redis, sizing)
            for pair in range(a.pairs):
                for with_agent in (False, True):
                    agent = bench.Agent([("db", str(port))], 1, tag="db") if with_agent else None
                    try:
                        before = decoded(agent) if agent else 0
                        rate, ops = server.run(a.secs)
                        if agent:
                            time.sleep(2)
                            # pgbench -S runs one SELECT per transaction (and its connections'
                            # set-up, not an operation); redis-benchmark one command each.
                            lost.append((decoded(agent) - before) / ops)
                    finally:
                        if agent:
                            agent.stop()
                    rows[with_agent].append(rate)
                    print(f"{kind.__name__} pair {pair} agent={with_agent}: {rate:.0f} ops/s", flush=True)
        finally:
            server.stop()
        base, wa = statistics.median(rows[False]), statistics.median(rows[True])
        print(f"{kind.name}: median {base:.0f} ops/s without, {wa:.0f} with the agent: ratio {wa / base:.3f}; "
              f"operations decoded per operation run: {', '.join(f'{x:.2f}' for x in lost)}", flush=True)


if __name__ == "__main__":
    main()
