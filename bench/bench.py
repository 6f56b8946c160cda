#!/usr/bin/env python3
"""Overhead benchmarks of the beyla-rs agent (the capture family `auto` picks here, and the
syscall-tracepoint family beside it).

Run through bench/run, which builds everything first. Writes one JSON object per measurement
to <out>/raw.jsonl (plus meta.json); bench/report.py turns that into tables and plots.
Needs root (the agent loads BPF programs; kernel.bpf_stats_enabled is switched on for the run).
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
# bench/run --smoke uses the debug build the tests already made (BENCH_PROFILE=debug): it only
# checks that the suite runs; figures come from the release build.
PROFILE = os.environ.get("BENCH_PROFILE", "release")
AGENT = os.path.join(TARGET, PROFILE, "beyla")
LOADGEN = os.path.join(TARGET, PROFILE, "loadgen")
APPS = os.path.join(REPO, "testapps", "build")
DEMO = os.path.join(APPS, "demo")
GRPCLOAD = os.path.join(APPS, "bench-grpcload")
HZ = os.sysconf("SC_CLK_TCK")
HTTP_LANGS = ["go", "python", "node", "java", "rust"]
# The Go app again with discovery.skip_go_specific_tracers: the generic path alone, to compare
# with the Go uprobe path (the default, "go", built with Debian's go1.19: two uprobe hits per
# request), and built with go1.23 (one hit per request: go1.21+ records a goroutine's creator).
GO_GENERIC = "go-generic"
GO123 = "go1.23"


def app_kind(app):
    """The test app an entry runs ("go-generic" and "go1.23" are the Go app)."""
    return "go" if app in (GO_GENERIC, GO123) else app


def go_probed(app):
    """Entries whose process the agent instruments with the Go probes."""
    return app in ("go", GO123, "grpc")

FULL = dict(pairs=3, sat_s=5, wrk_c=32, lat_pairs=2, lat_s=8.0, lat_rate=500, lat_c=32,
            wake_variants=["0", "16", "64"], wake_apps=[], routes=[1, 10, 100, 1000], procs=[1, 10, 50],
            conns=[10, 100, 1000], growth_rate=2000, growth_s=8.0, idle_settle_s=6, idle_s=20,
            steady_apps=["python", "java", "rust"], steady_settle_s=12, steady_s=20,
            family_variants=["tracepoints"], family_apps=["rust", "node", GO_GENERIC])
SMOKE = dict(pairs=1, sat_s=1, wrk_c=16, lat_pairs=1, lat_s=1.5, lat_rate=300, lat_c=16,
             wake_variants=["0"], wake_apps=["rust"], routes=[1, 100], procs=[1, 3], conns=[10, 100],
             growth_rate=500, growth_s=1.5, idle_settle_s=0, idle_s=3, steady_apps=["rust"], steady_settle_s=1,
             steady_s=1, family_variants=["tracepoints"], family_apps=["rust"])

OUT = None
P = None
SATURATION = {}  # app -> req/s without the agent, from the throughput runs


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def record(kind, **kw):
    kw["kind"] = kind
    kw["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(os.path.join(OUT, "raw.jsonl"), "a") as f:
        f.write(json.dumps(kw) + "\n")
    return kw


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def free_range(n):
    """n consecutive free ports."""
    for base in range(20000, 60000, 97):
        ok = True
        for p in range(base, base + n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return base
    raise RuntimeError("no free port range")


def cpu_s(pid):
    """utime + stime of a process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except OSError:
        return float("nan")


def thread_cpu_ns(pid):
    """CPU time of each thread of a process (tid -> ns, from /proc/<pid>/task/*/schedstat):
    nanoseconds, where /proc/<pid>/stat counts 10 ms ticks (a few ticks is all the agent uses
    in a fixed-rate run)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def agent_cpu_delta(a, b):
    """Agent CPU seconds between two snapshots: per-thread nanoseconds when no thread of the
    first ended before the second (an ended thread's time is gone from /proc), ticks otherwise."""
    ta, tb = a.get("agent_threads") or {}, b.get("agent_threads") or {}
    if ta and ta.keys() <= tb.keys():
        return sum(ns - ta.get(tid, 0) for tid, ns in tb.items()) / 1e9
    return b["agent_cpu"] - a["agent_cpu"]


def mem_breakdown(pid):
    """RSS split: anonymous (heap), BPF map mappings (ring buffers; a ring buffer's data pages
    are mapped twice, so they count double), the rest of the file mappings (binary, libraries)."""
    out = {"bpf_map_rss_kb": 0}
    try:
        name = ""
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                parts = line.split()
                if "-" in parts[0] and len(parts) >= 5:
                    name = parts[5] if len(parts) > 5 else ""
                elif parts[0] == "Rss:" and name.startswith("anon_inode:bpf-map"):
                    out["bpf_map_rss_kb"] += int(parts[1])
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("RssAnon", "RssFile", "RssShmem", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def mem_kb(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def prog_ids(pid):
    """IDs of the BPF programs process `pid` holds open (/proc/<pid>/fdinfo `prog_id:`)."""
    ids = set()
    d = f"/proc/{pid}/fdinfo"
    try:
        for fd in os.listdir(d):
            try:
                with open(os.path.join(d, fd)) as f:
                    for line in f:
                        if line.startswith("prog_id:"):
                            ids.add(int(line.split()[1]))
            except OSError:
                pass
    except OSError:
        pass
    return ids


def bpf_stats(pid):
    """(run_time_ns, run_cnt, per program) summed over the BPF programs of process `pid`
    (kernel.bpf_stats_enabled must be 1)."""
    ids = prog_ids(pid)
    try:
        progs = json.loads(subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True,
                                          check=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return (0, 0, {})
    ns = cnt = 0
    per = {}
    for p in progs:
        if p.get("id") not in ids:
            continue
        ns += p.get("run_time_ns", 0)
        cnt += p.get("run_cnt", 0)
        per[p.get("name", "?")] = (p.get("run_time_ns", 0), p.get("run_cnt", 0))
    return (ns, cnt, per)


def http_text(port, path, timeout=5):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return ""


def metric_sum(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, val = line.rpartition(" ")
        n = head.split("{", 1)[0]
        if n != name:
            continue
        if any(f'{k}="{v}"' not in head for k, v in labels.items()):
            continue
        total += float(val)
    return total


def count_series(text, name, label):
    vals = set()
    for line in text.splitlines():
        if line.startswith(name + "{"):
            m = re.search(label + r'="([^"]*)"', line)
            if m:
                vals.add(m.group(1))
    return len(vals)


class App:
    def __init__(self, lang, port, extra=None):
        self.lang, self.port = lang, port
        if lang == "grpc":
            self.stats_port = free_port()
            cmd = [os.path.join(DEMO, "worker"), "-addr", f"127.0.0.1:{port}", "-stats-addr",
                   f"127.0.0.1:{self.stats_port}"]
        else:
            launcher = os.path.join(APPS, "go1.23", "run-go") if extra == GO123 else os.path.join(APPS, f"run-{lang}")
            cmd = [launcher, str(port)]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if lang == "grpc":
            wait_port(port)
        else:
            line = self.p.stdout.readline().strip()
            if line != f"listening on {port}":
                raise RuntimeError(f"{lang} app did not start: {line!r}")
        self.pid = self.p.pid

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


def start_nginx(d, server, ports, worker_connections=1024):
    """Debian's nginx, one worker, everything under directory `d` (logs, temporary files, pid),
    serving the `server { ... }` block `server` with its root `d`/www; returns once every port
    of `ports` accepts connections."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for sub in ("www", "tmp", "logs"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
error_log {d}/logs/error.log;
pid {d}/nginx.pid;
events {{ worker_connections {worker_connections}; }}
http {{
  access_log off;
  default_type text/plain;
  keepalive_requests 1000000;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
{server}
}}
""")
    p = subprocess.Popen([nginx, "-p", d, "-c", conf, "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        for port in ports:
            wait_port(port)
    except RuntimeError:
        p.kill()
        raise SystemExit("nginx did not start: " + open(os.path.join(d, "logs", "error.log")).read())
    return p


class Agent:
    """The agent in release mode; RSS is sampled every 0.25 s from a helper thread."""

    def __init__(self, selectors, expect, unmatched="heuristic", wakeup=None, tag="run", go=0, skip_go=False,
                 hook_mode=None):
        self.mport = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"beyla-bench-{tag}-")
        cfg = os.path.join(self.dir, "beyla.yml")
        with open(cfg, "w") as f:
            f.write(f"prometheus_export:\n  port: {self.mport}\n"
                    f"discovery:\n  min_process_age: 0s\n"
                    + ("  skip_go_specific_tracers: true\n" if skip_go else "") + "  instrument:\n")
            for name, ports in selectors:
                f.write(f"    - open_ports: \"{ports}\"\n" + (f"      name: {name}\n" if name else ""))
            f.write(f"routes:\n  unmatched: {unmatched}\n")
            if wakeup is not None or hook_mode:
                f.write("ebpf:\n")
            if wakeup is not None:
                f.write(f"  wakeup_len: {wakeup}\n")
            if hook_mode:
                f.write(f"  hook_mode: {hook_mode}\n")
        self.log = os.path.join(self.dir, "agent.log")
        self.t0 = time.time()
        self.p = subprocess.Popen([AGENT, "--config", cfg], stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        self.pid = self.p.pid
        self.rss_max_kb = 0
        self.samples = []
        import threading
        self._stop = False
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        end = time.time() + 60
        while time.time() < end:
            if self.p.poll() is not None:
                raise RuntimeError(f"agent exited: {open(self.log).read()[-2000:]}")
            if metric_sum(self.internal(), "beyla_instrumented_processes") >= expect:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"agent did not instrument {expect} processes: {open(self.log).read()[-2000:]}")
        # The Go probes attach once the executable is inspected: measure with them in place.
        while go and metric_sum(self.internal(), "beyla_instrumented_go_processes") < go:
            if time.time() > end:
                raise RuntimeError(f"Go probes not attached to {go} processes: {open(self.log).read()[-2000:]}")
            time.sleep(0.1)
        self.ready_s = time.time() - self.t0
        # The capture family the agent loaded (the label of its events counter).
        m = re.search(r'beyla_internal_build_info\{[^}]*hook_family="([a-z]+)"', self.internal())
        self.family = m.group(1) if m else None

    def _sample(self):
        while not self._stop:
            m = mem_kb(self.pid)
            if "VmRSS" in m:
                self.samples.append((time.time() - self.t0, m["VmRSS"]))
            time.sleep(0.25)

    def internal(self):
        return http_text(self.mport, "/internal/metrics")

    def metrics(self):
        return http_text(self.mport, "/metrics")

    def stop(self):
        m = mem_kb(self.pid)
        self._stop = True
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        return m


def served(metrics):
    """Server requests and calls the agent counted: HTTP, and gRPC (the grpc app)."""
    return (metric_sum(metrics, "http_server_request_duration_seconds_count")
            + metric_sum(metrics, "rpc_server_call_duration_seconds_count"))


def agent_cpu(agent):
    return {"agent_cpu": cpu_s(agent.pid), "agent_threads": thread_cpu_ns(agent.pid)}


def snapshot(agent, apps, cpu=None):
    """Costs and counts so far. The agent's CPU is read after its scrapes here, or passed in
    (`cpu`, read before any scrape): serving /metrics is a cost per scrape (every 15-60 s in
    production), not per request, and the runs here scrape several times in 20 s."""
    s = {"t": time.time(), "load": loadavg(), "app_cpu": sum(cpu_s(a.pid) for a in apps)}
    if agent:
        s["bpf_ns"], s["bpf_cnt"], _ = bpf_stats(agent.pid)
        t = agent.internal()
        s["lost"] = metric_sum(t, "beyla_ebpf_events_lost_total")
        s["read"] = metric_sum(t, "beyla_ebpf_events_read_total")
        s["decoded"] = metric_sum(t, "beyla_decoded_requests_total", side="server")
        s["counted"] = served(agent.metrics())
        s.update({("agent_" + k): v for k, v in mem_kb(agent.pid).items()})
        s.update(cpu or agent_cpu(agent))
    return s


def settle_counts(agent, timeout=10.0, interval=1.5):
    """Waits until the agent's request count stops moving (its pipeline has drained): unchanged
    over `interval`, by default longer than ebpf.batch_timeout (1 s), the longest an event waits
    in the reader."""
    last, end = -1.0, time.time() + timeout
    while time.time() < end:
        c = served(agent.metrics())
        if c == last:
            return
        last = c
        time.sleep(interval)


def diff(a, b, n):
    """Per-run costs from two snapshots and the number of requests completed."""
    d = {"load_before": a["load"], "load_after": b["load"], "wall_s": b["t"] - a["t"],
         "app_cpu_s": b["app_cpu"] - a["app_cpu"]}
    d["app_cpu_us_per_req"] = d["app_cpu_s"] / n * 1e6 if n else None
    if "agent_cpu" in a:
        d["agent_cpu_s"] = agent_cpu_delta(a, b)
        d["agent_cpu_s_per_10k"] = d["agent_cpu_s"] / n * 1e4 if n else None
        d["bpf_ns"] = b["bpf_ns"] - a["bpf_ns"]
        d["bpf_runs"] = b["bpf_cnt"] - a["bpf_cnt"]
        d["bpf_ns_per_req"] = d["bpf_ns"] / n if n else None
        d["bpf_ns_per_run"] = d["bpf_ns"] / d["bpf_runs"] if d["bpf_runs"] else None
        for k in ("lost", "read", "decoded", "counted"):
            d[k] = b[k] - a[k]
        d["agent_rss_kb"] = b.get("agent_VmRSS")
        d["agent_hwm_kb"] = b.get("agent_VmHWM")
    return d


def wrk(port, secs, conns):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{int(secs)}s", "--latency", f"http://127.0.0.1:{port}/ping"],
                         capture_output=True, text=True).stdout
    n = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errs = sum(int(x) for x in m.groups()) if m else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"completed": n, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "errors": errs, "non2xx": int(non2xx.group(1)) if non2xx else 0}


def grpc_load(port, secs, conns):
    out = subprocess.run([GRPCLOAD, "-addr", f"127.0.0.1:{port}", "-c", str(conns), "-duration", f"{secs}s"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def loadgen(port, secs, rate, conns, routes=None):
    cmd = [LOADGEN, "--port", str(port), "-c", str(conns), "-d", str(secs), "-R", str(rate)]
    if routes:
        cmd += ["--routes", str(routes)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def measured_run(app_list, agent, fn):
    """One measurement: snapshot, load, drain, snapshot; returns (load result, costs)."""
    time.sleep(0.5)
    a = snapshot(agent, app_list)
    res = fn()
    cpu = None
    if agent:
        # The reader hands on what it holds within ebpf.batch_timeout (1 s); the agent's CPU
        # is read once that is done and before settle_counts scrapes /metrics.
        time.sleep(1.5)
        cpu = agent_cpu(agent)
        settle_counts(agent, interval=0.3)
    b = snapshot(agent, app_list, cpu)
    return res, diff(a, b, res["completed"])


def bench_agent(lang, **kw):
    """The agent instrumenting the one app of a throughput or latency run."""
    return Agent([("", str(kw.pop("port")))], 1, tag=lang, go=1 if go_probed(lang) else 0,
                 skip_go=lang == GO_GENERIC, **kw)


def throughput(lang):
    port = free_port()
    app = App(app_kind(lang), port, extra=lang)
    load = (lambda: grpc_load(port, P["sat_s"], P["wrk_c"])) if lang == "grpc" else \
        (lambda: wrk(port, P["sat_s"], P["wrk_c"]))
    try:
        load()  # warm-up (JIT, caches), not recorded
        # Each pair: without the agent, with it as configured (auto), then with each other
        # capture family of family_variants, interleaved so that machine drift cancels.
        variants = [None] + (P["family_variants"] if lang in P["family_apps"] else [])
        for pair in range(P["pairs"]):
            for with_agent, hook_mode in [(False, None)] + [(True, v) for v in variants]:
                agent = bench_agent(lang, port=port, hook_mode=hook_mode) if with_agent else None
                try:
                    res, cost = measured_run([app], agent, load)
                    extra = {}
                    if agent:
                        extra = {"agent_ready_s": agent.ready_s, "family": agent.family,
                                 "agent_peak_rss_kb": max((s for _, s in agent.samples), default=0)}
                        agent.stop()
                    if not with_agent:
                        SATURATION.setdefault(lang, []).append(res["rps"])
                    kind = "family" if hook_mode else "throughput"
                    r = record(kind, app=lang, pair=pair, agent=with_agent, hook_mode=hook_mode, load=res, **cost,
                               **extra)
                    log(f"{kind} {lang} pair {pair} agent={with_agent} {agent.family if agent else ''}: "
                        f"{res['rps']:.0f} req/s", f"counted={r.get('counted')} lost={r.get('lost')}" if agent else "")
                finally:
                    if agent and agent.p.poll() is None:
                        agent.stop()
        if lang not in ("grpc", GO_GENERIC) and (not P["wake_apps"] or lang in P["wake_apps"]):
            for wake in P["wake_variants"]:
                agent = bench_agent(lang, port=port, wakeup=wake)
                try:
                    res, cost = measured_run([app], agent, load)
                finally:
                    agent.stop()
                record("loss", app=lang, wakeup_len=wake, load=res, **cost)
                log(f"loss {lang} wakeup_len={wake}: sent {res['completed']} counted {cost['counted']} "
                    f"lost {cost['lost']}")
    finally:
        app.stop()


def latency(lang):
    """Below saturation: the fixed rate, or 40% of what the app sustained without the agent."""
    port = free_port()
    app = App(app_kind(lang), port, extra=lang)
    rate = P["lat_rate"]
    if SATURATION.get(lang):
        rate = min(rate, int(0.4 * min(SATURATION[lang])))
    load = lambda: loadgen(port, P["lat_s"], rate, P["lat_c"])  # noqa: E731
    try:
        loadgen(port, 1.0, rate, P["lat_c"])  # warm-up
        for pair in range(P["lat_pairs"]):
            for with_agent in (False, True):
                agent = bench_agent(lang, port=port) if with_agent else None
                try:
                    res, cost = measured_run([app], agent, load)
                finally:
                    if agent:
                        agent.stop()
                record("latency", app=lang, pair=pair, agent=with_agent, load=res, **cost)
                log(f"latency {lang} pair {pair} agent={with_agent}: p50 {res['lat_us']['p50']} us "
                    f"p99 {res['lat_us']['p99']} us")
    finally:
        app.stop()


def steady(lang):
    """Agent CPU at the latency runs' fixed rate once nothing but the load changes. A new
    process (the agent, the load generator) makes discovery scan /proc at the next two polls
    (discovery.poll_interval, 5 s), ~2 ms each here: in an 8 s latency run that is most of
    the agent's cost at a few hundred req/s. This window opens 12 s after the load generator
    started, and the harness neither forks nor scrapes in it; requests = rate x window (open
    loop, below saturation)."""
    port = free_port()
    app = App(app_kind(lang), port, extra=lang)
    rate = P["lat_rate"]
    if SATURATION.get(lang):
        rate = min(rate, int(0.4 * min(SATURATION[lang])))
    try:
        loadgen(port, 1.0, rate, P["lat_c"])  # warm-up
        agent = bench_agent(lang, port=port)
        try:
            secs = P["steady_settle_s"] + P["steady_s"] + 1
            lg = subprocess.Popen([LOADGEN, "--port", str(port), "-c", str(P["lat_c"]), "-d", str(secs), "-R",
                                   str(rate)], stdout=subprocess.PIPE, text=True)
            time.sleep(P["steady_settle_s"])
            a = {"t": time.time(), **agent_cpu(agent)}
            time.sleep(P["steady_s"])
            b = {"t": time.time(), **agent_cpu(agent)}
            res = json.loads(lg.communicate()[0])
        finally:
            agent.stop()
        cpu = agent_cpu_delta(a, b)
        requests = rate * (b["t"] - a["t"])
        record("steady", app=lang, rate=rate, window_s=b["t"] - a["t"], agent_cpu_s=cpu,
               agent_cpu_s_per_10k=cpu / requests * 1e4, load=res)
        log(f"steady {lang} at {rate} req/s: agent {cpu * 1e3:.1f} ms CPU in {b['t'] - a['t']:.1f} s")
    finally:
        app.stop()


def growth_routes():
    port = free_port()
    app = App("rust", port)
    try:
        for mode in ("heuristic", "path"):
            for n in P["routes"]:
                agent = Agent([("", str(port))], 1, unmatched=mode, tag="routes")
                try:
                    res, cost = measured_run([app], agent,
                                             lambda: loadgen(port, P["growth_s"], P["growth_rate"], 10, routes=n))
                    series = count_series(agent.metrics(), "http_server_request_duration_seconds_count", "http_route")
                    peak = max((s for _, s in agent.samples), default=0)
                finally:
                    m = agent.stop()
                record("growth", dim="routes", mode=mode, n=n, series=series, load=res, agent_peak_rss_kb=peak,
                       agent_hwm_final_kb=m.get("VmHWM"), **cost)
                log(f"routes {mode} {n}: {series} series, rss {cost['agent_rss_kb']} kB")
    finally:
        app.stop()


def growth_procs():
    for n in P["procs"]:
        base = free_range(n)
        apps = [App("rust", base + i) for i in range(n)]
        try:
            sel = [(f"svc-{i}", str(base + i)) for i in range(n)]
            agent = Agent(sel, n, tag="procs")
            try:
                res, cost = measured_run(apps, agent, lambda: loadgen_ports(base, n))
                peak = max((s for _, s in agent.samples), default=0)
            finally:
                m = agent.stop()
            record("growth", dim="processes", n=n, load=res, agent_peak_rss_kb=peak,
                   agent_hwm_final_kb=m.get("VmHWM"), agent_ready_s=agent.ready_s, **cost)
            log(f"processes {n}: rss {cost['agent_rss_kb']} kB, ready in {agent.ready_s:.1f} s")
        finally:
            for a in apps:
                a.stop()


def loadgen_ports(base, n):
    """Fixed total rate spread over n apps: one loadgen per app, run concurrently."""
    rate = P["growth_rate"] / n
    procs = [subprocess.Popen([LOADGEN, "--port", str(base + i), "-c", "2", "-d", str(P["growth_s"]), "-R",
                               str(rate)], stdout=subprocess.PIPE, text=True) for i in range(n)]
    outs = [json.loads(p.communicate()[0]) for p in procs]
    return {"completed": sum(o["completed"] for o in outs), "errors": sum(o["errors"] for o in outs),
            "rps": sum(o["rps"] for o in outs), "loadgens": n}


def growth_conns():
    port = free_port()
    app = App("rust", port)
    try:
        for n in P["conns"]:
            agent = Agent([("", str(port))], 1, tag="conns")
            try:
                res, cost = measured_run([app], agent, lambda: loadgen(port, P["growth_s"], P["growth_rate"], n))
                peak = max((s for _, s in agent.samples), default=0)
            finally:
                m = agent.stop()
            record("growth", dim="connections", n=n, load=res, agent_peak_rss_kb=peak,
                   agent_hwm_final_kb=m.get("VmHWM"), **cost)
            log(f"connections {n}: rss {cost['agent_rss_kb']} kB p99 {res['lat_us']['p99']} us")
    finally:
        app.stop()


def idle_agent():
    """Agent alone for a while with one idle instrumented app: the floor of its cost."""
    port = free_port()
    app = App("rust", port)
    try:
        agent = Agent([("", str(port))], 1, tag="idle")
        try:
            # Past the start-up: discovery confirms its first scan a poll (5 s) later.
            time.sleep(P["idle_settle_s"])
            a = snapshot(agent, [app])
            time.sleep(P["idle_s"])
            b = snapshot(agent, [app], agent_cpu(agent))
            breakdown = mem_breakdown(agent.pid)
            peak = max((s for _, s in agent.samples), default=0)
        finally:
            m = agent.stop()
        record("idle", mem=breakdown, agent_cpu_s=agent_cpu_delta(a, b), wall_s=b["t"] - a["t"],
               agent_rss_kb=b.get("agent_VmRSS"), agent_peak_rss_kb=peak, agent_hwm_kb=m.get("VmHWM"),
               agent_ready_s=agent.ready_s, rss_samples=agent.samples[:400], settle_s=P["idle_settle_s"],
               load_before=a["load"],
               load_after=b["load"])
    finally:
        app.stop()


def main():
    global OUT, P
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="a few seconds per app; checks the suite works")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="idle,throughput,latency,steady,routes,procs,conns")
    ap.add_argument("--apps", default=",".join(HTTP_LANGS + [GO_GENERIC, GO123, "grpc"]))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (the agent loads BPF programs)")
    OUT, P = args.out, dict(SMOKE if args.smoke else FULL)
    os.makedirs(OUT, exist_ok=True)
    open(os.path.join(OUT, "raw.jsonl"), "w").close()
    apps = args.apps.split(",")
    if not os.path.exists(GRPCLOAD) and "grpc" in apps:
        log("grpc load client missing; skipping grpc")
        apps.remove("grpc")
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        stats_before = f.read().strip()
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    meta = {"command": " ".join(["bench/run"] + (["--smoke"] if args.smoke else [])),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "kernel": platform.release(),
            "cpus": os.cpu_count(), "cpu_model": cpu_model(), "params": P,
            "git": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True).stdout.strip(),
            "os": os_release(), "wrk": "wrk 4.1.0 (Debian)", "load_start": loadavg()}
    only = args.only.split(",")
    try:
        if "idle" in only:
            idle_agent()
        if "throughput" in only:
            for lang in apps:
                throughput(lang)
        if "latency" in only:
            for lang in [a for a in apps if a != "grpc"]:
                latency(lang)
        if "steady" in only:
            for lang in [a for a in P["steady_apps"] if a in apps]:
                steady(lang)
        if "routes" in only:
            growth_routes()
        if "procs" in only:
            growth_procs()
        if "conns" in only:
            growth_conns()
    finally:
        subprocess.run(["sysctl", "-qw", f"kernel.bpf_stats_enabled={stats_before}"])
        meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        meta["load_end"] = loadavg()
        with open(os.path.join(OUT, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def os_release():
    try:
        with open("/etc/os-release") as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line).get("PRETTY_NAME", "").strip('"')
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
