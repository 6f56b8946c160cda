#!/usr/bin/env python3
"""Tables (markdown) and plots (SVG, if matplotlib is importable) from a bench.py run.

  report.py OUT [--doc docs/benchmarks.md] [--plots DIR] [--check]

Prints the tables; --doc replaces the text between `<!-- bench:tables:begin -->` and
`<!-- bench:tables:end -->` in that file; --check fails (exit 1) when the suite measured nothing
(a with-agent run counted no requests, a run has no result): the smoke test's assertion.
"""
import argparse
import json
import os
import statistics
import sys

TARGETS = {"ratio": 0.97, "p99_added_us": 20, "cores_per_10k": 0.05, "rss_mb": 40, "peak_mb": 80}


# ebpf.wakeup_len when the agent's config leaves it out (agent/src/config/sections/ebpf.rs).
DEFAULT_WAKEUP_LEN = 500

def load(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "raw.jsonl")) if line.strip()]
    meta = json.load(open(os.path.join(out, "meta.json")))
    return rows, meta


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, fmt="{:.0f}"):
    return "-" if x is None else fmt.format(x)


def mb(kb):
    return None if kb is None else kb / 1024


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def ok(v, target, le=True):
    if v is None:
        return "-"
    return "yes" if (v <= target if le else v >= target) else "**no**"


def apps_of(rows, kind):
    seen = []
    for r in rows:
        if r["kind"] == kind and r["app"] not in seen:
            seen.append(r["app"])
    return seen


def throughput_table(rows):
    out = []
    for app in apps_of(rows, "throughput"):
        rs = [r for r in rows if r["kind"] == "throughput" and r["app"] == app]
        pairs = sorted({r["pair"] for r in rs})
        ratios = []
        for p in pairs:
            a = [r for r in rs if r["pair"] == p and not r["agent"]]
            b = [r for r in rs if r["pair"] == p and r["agent"]]
            if a and b and a[0]["load"]["rps"]:
                ratios.append(b[0]["load"]["rps"] / a[0]["load"]["rps"])
        without = med([r["load"]["rps"] for r in rs if not r["agent"]])
        with_ = med([r["load"]["rps"] for r in rs if r["agent"]])
        ratio = med(ratios)
        out.append([app, f(without), f(with_), f(ratio, "{:.3f}"),
                    " ".join(f"{x:.3f}" for x in ratios), ok(ratio, TARGETS["ratio"], le=False)])
    return table(["app", "req/s without", "req/s with agent", "ratio (median of pairs)", "pairs", ">= 0.97"], out)


def family_table(rows):
    """Throughput with each capture family, against the same pair's run without the agent."""
    out = []
    for app in apps_of(rows, "family"):
        base = {r["pair"]: r["load"]["rps"] for r in rows
                if r["kind"] == "throughput" and r["app"] == app and not r["agent"]}
        runs = [r for r in rows if r["kind"] in ("throughput", "family") and r["app"] == app and r["agent"]]
        for family in sorted({r.get("family") or "?" for r in runs}):
            rs = [r for r in runs if (r.get("family") or "?") == family]
            ratios = [r["load"]["rps"] / base[r["pair"]] for r in rs if base.get(r["pair"])]
            how = "auto" if any(r["kind"] == "throughput" for r in rs) else "ebpf.hook_mode"
            out.append([app, f"{family} ({how})", f(med([r["load"]["rps"] for r in rs])), f(med(ratios), "{:.3f}"),
                        " ".join(f"{x:.3f}" for x in ratios), f(med([r.get("bpf_ns_per_req") for r in rs])),
                        f(med([r.get("agent_cpu_s_per_10k") for r in rs]), "{:.3f}")])
    return table(["app", "capture family", "req/s with agent", "ratio (median of pairs)", "pairs", "BPF ns / req",
                  "agent CPU s / 10k req"], out)


def latency_table(rows):
    out = []
    for app in apps_of(rows, "latency"):
        rs = [r for r in rows if r["kind"] == "latency" and r["app"] == app]
        g = lambda agent, q: med([r["load"]["lat_us"][q] for r in rs if r["agent"] == agent])  # noqa: E731
        p50a, p50b, p99a, p99b = g(False, "p50"), g(True, "p50"), g(False, "p99"), g(True, "p99")
        add99 = None if p99a is None or p99b is None else p99b - p99a
        rate = rs[0]["load"]["rate"]
        out.append([app, f(rate), f(p50a), f(p50b), f(None if p50a is None else p50b - p50a), f(p99a), f(p99b),
                    f(add99), ok(add99, TARGETS["p99_added_us"])])
    return table(["app", "req/s", "p50 without (us)", "p50 with", "p50 added", "p99 without", "p99 with",
                  "p99 added", "<= 20 us"], out)


def cost_table(rows):
    out = []
    for app in apps_of(rows, "throughput"):
        sat = [r for r in rows if r["kind"] == "throughput" and r["app"] == app]
        lat = [r for r in rows if r["kind"] == "latency" and r["app"] == app]
        cpu_sat = med([r.get("agent_cpu_s_per_10k") for r in sat if r["agent"]])
        cpu_lat = med([r.get("agent_cpu_s_per_10k") for r in lat if r["agent"]])
        bpf_req = med([r.get("bpf_ns_per_req") for r in sat if r["agent"]])
        bpf_run = med([r.get("bpf_ns_per_run") for r in sat if r["agent"]])
        app_a = med([r.get("app_cpu_us_per_req") for r in lat if not r["agent"]])
        app_b = med([r.get("app_cpu_us_per_req") for r in lat if r["agent"]])
        rss = med([mb(r.get("agent_rss_kb")) for r in sat if r["agent"]])
        peak = max([mb(r.get("agent_hwm_kb")) or 0 for r in sat if r["agent"]] or [0]) or None
        worst = max([x for x in (cpu_sat, cpu_lat) if x is not None], default=None)
        out.append([app, f(cpu_sat, "{:.3f}"), f(cpu_lat, "{:.3f}"), ok(worst, TARGETS["cores_per_10k"]),
                    f(bpf_req, "{:.0f}"), f(bpf_run, "{:.0f}"), f(app_a, "{:.0f}"), f(app_b, "{:.0f}"),
                    f(rss, "{:.1f}"), f(peak, "{:.1f}")])
    return table(["app", "agent CPU s / 10k req (saturation)", "same at fixed rate", "<= 0.05",
                  "BPF ns / req", "BPF ns / program run", "app CPU us/req without", "with",
                  "agent RSS MB (end of run)", "agent peak RSS MB (VmHWM)"], out)


def steady_table(rows):
    out = []
    for r in rows:
        if r["kind"] == "steady":
            out.append([r["app"], str(r["rate"]), f(r["window_s"], "{:.0f}"), f(r["agent_cpu_s"] * 1e3, "{:.1f}"),
                        f(r["agent_cpu_s_per_10k"], "{:.3f}"), ok(r["agent_cpu_s_per_10k"], TARGETS["cores_per_10k"])])
    return table(["app", "req/s", "window (s)", "agent CPU ms", "agent CPU s / 10k req", "<= 0.05"], out)


def loss_table(rows):
    base = {a: med([r["load"]["rps"] for r in rows if r["kind"] == "throughput" and r["app"] == a and not r["agent"]])
            for a in apps_of(rows, "throughput")}
    out = []
    for r in rows:
        if r["kind"] == "throughput" and r["agent"]:
            wake = f"{DEFAULT_WAKEUP_LEN} (default)"
        elif r["kind"] == "loss":
            wake = r["wakeup_len"]
        else:
            continue
        sent = r["load"]["completed"]
        ratio = r["load"]["rps"] / base[r["app"]] if base.get(r["app"]) else None
        out.append([r["app"], wake, r.get("pair", "-"), f(r["load"]["rps"]), f(ratio, "{:.3f}"), sent, f(r.get("counted")), f(r.get("decoded")),
                    f(sent - r["counted"]), f(r.get("lost"))])
    return table(["app", "ebpf.wakeup_len", "pair", "req/s", "ratio to median without agent",
                  "completed by load generator", "on /metrics",
                  "decoded (server)", "missing", "events lost"], out)


def growth_table(rows, dim):
    rs = [r for r in rows if r["kind"] == "growth" and r["dim"] == dim]
    out = []
    for r in rs:
        label = f"{r['mode']} {r['n']}" if dim == "routes" else str(r["n"])
        extra = [r.get("series", "-")] if dim == "routes" else []
        lat = r["load"].get("lat_us", {}).get("p99")
        out.append([label] + extra + [f(r["load"]["rps"]), f(r.get("agent_cpu_s_per_10k"), "{:.3f}"),
                                      f(mb(r.get("agent_rss_kb")), "{:.1f}"), f(mb(r.get("agent_hwm_kb")), "{:.1f}"),
                                      f(r.get("lost")), f(r["load"]["completed"] - r["counted"]), f(lat)])
    head = [dim] + (["route series"] if dim == "routes" else []) + \
        ["req/s", "agent CPU s / 10k req", "RSS MB", "peak RSS MB", "events lost", "missing", "p99 us"]
    return table(head, out)


def idle_table(rows):
    out = []
    for r in rows:
        if r["kind"] == "idle":
            m = r.get("mem", {})
            out.append([f(r["agent_ready_s"], "{:.2f}"), f(r["agent_cpu_s"] / r["wall_s"] * 100, "{:.2f}"),
                        f(mb(r["agent_rss_kb"]), "{:.1f}"), f(mb(r["agent_hwm_kb"]), "{:.1f}"),
                        f(mb(m.get("RssAnon")), "{:.1f}"), f(mb(m.get("bpf_map_rss_kb")), "{:.1f}"),
                        f(mb((m.get("RssFile") or 0) - (m.get("bpf_map_rss_kb") or 0)), "{:.1f}")])
    return table(["start to instrumented (s)", "idle CPU %", "idle RSS MB", "peak RSS MB (start-up incl.)",
                  "of which anonymous (heap)", "BPF map mappings", "binary and libraries"], out)


def render(rows, meta):
    parts = [
        f"Command `{meta['command']}`, {meta['started']} to {meta['finished']}, commit `{meta['git']}`; "
        f"{meta['os']}, kernel {meta['kernel']}, {meta['cpus']} vCPU ({meta['cpu_model']}); "
        f"load average {meta['load_start']} at start, {meta['load_end']} at end.",
        "### Throughput at saturation (wrk -t1 -c%d, %gs runs, agent off/on interleaved)"
        % (meta["params"]["wrk_c"], meta["params"]["sat_s"]), throughput_table(rows),
    ]
    if any(r["kind"] == "family" for r in rows):
        parts += ["### Throughput by capture family (the same pairs: each family's run against the pair's run "
                  "without the agent)", family_table(rows)]
    parts += [
        "### Latency at a fixed rate (bench loadgen, open loop, %d connections, %gs runs)"
        % (meta["params"]["lat_c"], meta["params"]["lat_s"]), latency_table(rows),
        "### Agent cost", cost_table(rows),
    ]
    if any(r["kind"] == "steady" for r in rows):
        parts += ["### Agent CPU at the fixed rate, steady (window from %gs into the load, nothing started in it)"
                  % meta["params"]["steady_settle_s"], steady_table(rows)]
    parts += [
        "### Agent idle (one instrumented app, no traffic; CPU from %gs after start, for %gs)"
        % (meta["params"].get("idle_settle_s", 0), meta["params"].get("idle_s", meta["params"]["sat_s"])),
        idle_table(rows),
        "### Loss", loss_table(rows),
    ]
    for dim, what in (("routes", "distinct routes (rust app)"), ("processes", "instrumented processes (rust apps)"),
                      ("connections", "concurrent keep-alive connections (rust app)")):
        if any(r["kind"] == "growth" and r["dim"] == dim for r in rows):
            parts += [f"### Growth: {what}, {meta['params']['growth_rate']} req/s for {meta['params']['growth_s']}s",
                      growth_table(rows, dim)]
    return "\n\n".join(parts) + "\n"


def plots(rows, d):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib not importable, no plots", file=sys.stderr)
        return []
    os.makedirs(d, exist_ok=True)
    made = []
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for col, dim in enumerate(("routes", "processes", "connections")):
        rs = [r for r in rows if r["kind"] == "growth" and r["dim"] == dim]
        series = {}
        for r in rs:
            series.setdefault(r.get("mode", dim), []).append(r)
        for name, pts in series.items():
            xs = [p["n"] for p in pts]
            axes[0][col].plot(xs, [mb(p["agent_rss_kb"]) for p in pts], marker="o", label=name)
            axes[1][col].plot(xs, [p["agent_cpu_s_per_10k"] for p in pts], marker="o", label=name)
        for row in (0, 1):
            axes[row][col].set_xscale("log")
            axes[row][col].set_xlabel(dim)
            axes[row][col].grid(True, alpha=0.3)
            if len(series) > 1:
                axes[row][col].legend()
        axes[0][col].set_ylabel("agent RSS (MB)")
        axes[0][col].set_ylim(bottom=0)
        axes[1][col].set_ylabel("agent CPU s / 10k requests")
        axes[1][col].set_ylim(bottom=0)
    fig.suptitle("beyla-rs agent cost as the work grows (fixed request rate)")
    fig.tight_layout()
    path = os.path.join(d, "growth.svg")
    fig.savefig(path)
    made.append(path)
    plt.close(fig)

    apps = apps_of(rows, "latency")
    if apps:
        fig, axes = plt.subplots(1, len(apps), figsize=(3.2 * len(apps), 3.6), sharey=False)
        axes = axes if len(apps) > 1 else [axes]
        for ax, app in zip(axes, apps):
            for agent, style in ((False, "-"), (True, "--")):
                rs = [r for r in rows if r["kind"] == "latency" and r["app"] == app and r["agent"] == agent]
                for i, r in enumerate(rs):
                    qs = [(q, v) for q, v in r["load"]["quantiles"] if q < 1.0]
                    ax.plot([1 / (1 - q) for q, _ in qs], [v for _, v in qs], style,
                            color="tab:red" if agent else "tab:blue",
                            label=("with agent" if agent else "without") if i == 0 else None)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks([1, 2, 10, 100, 1000, 10000])
            ax.set_xticklabels(["0", "50", "90", "99", "99.9", "99.99"])
            ax.set_xlabel("percentile")
            ax.set_title(app)
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel("latency (us)")
        axes[0].legend()
        fig.suptitle("Latency at a fixed rate, without and with the agent (each line one run)")
        fig.tight_layout()
        path = os.path.join(d, "latency.svg")
        fig.savefig(path)
        made.append(path)
        plt.close(fig)
    return made


def check(rows):
    problems = []
    kinds = {r["kind"] for r in rows}
    for k in ("throughput", "latency", "growth"):
        if k not in kinds:
            problems.append(f"no {k} results")
    for r in rows:
        if r.get("agent") or r["kind"] in ("loss", "growth"):
            if r["load"]["completed"] <= 0:
                problems.append(f"{r['kind']} {r.get('app', r.get('dim'))}: load generator completed nothing")
            if not r.get("counted"):
                problems.append(f"{r['kind']} {r.get('app', r.get('dim'))}: agent counted no requests")
        if r["kind"] == "family" and r.get("family") != r.get("hook_mode"):
            problems.append(f"family {r['app']}: asked for {r.get('hook_mode')}, the agent loaded {r.get('family')}")
        if r["kind"] == "steady" and (r["load"]["completed"] <= 0 or not r["agent_cpu_s"] > 0):
            problems.append(f"steady {r['app']}: no load completed or no agent CPU measured")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--doc")
    ap.add_argument("--plots")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    rows, meta = load(a.out)
    text = render(rows, meta)
    if a.plots:
        for p in plots(rows, a.plots):
            print(f"report: wrote {p}", file=sys.stderr)
    print(text)
    with open(os.path.join(a.out, "tables.md"), "w") as fh:
        fh.write(text)
    if a.doc:
        doc = open(a.doc).read()
        b, e = "<!-- bench:tables:begin -->", "<!-- bench:tables:end -->"
        if b in doc and e in doc:
            doc = doc.split(b)[0] + b + "\n" + text + e + doc.split(e, 1)[1]
            open(a.doc, "w").write(doc)
    if a.check:
        problems = check(rows)
        for p in problems:
            print("report: FAIL:", p, file=sys.stderr)
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
