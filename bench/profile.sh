#!/usr/bin/env bash
# Where the agent's overhead goes at saturation (evidence for docs/benchmarks.md): the rust test
# app under wrk with the agent, once per capture family (HOOK_MODES, default "socket tracepoints":
# ebpf.hook_mode, defaults otherwise); per run: CPU samples by process (perf record -a), the
# agent's hottest symbols, the in-kernel cost of each BPF program (kernel.bpf_stats_enabled) and
# the app's BPF/tracepoint share. Needs root, perf, bpftool, wrk and a built tree (bench/run
# builds it).
#   sudo bench/profile.sh > docs/benchmarks/profile.txt
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-$PWD/target}"
PORT="${PORT:-18090}" MPORT="${MPORT:-19490}" SECS="${SECS:-6}"
tmp="$(mktemp -d)"
echo "# bench/profile.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), commit $(git rev-parse --short HEAD)"
testapps/build/run-rust "$PORT" >"$tmp/app.out" &
app=$!
agent=
trap 'rc=$?; kill $app $agent 2>/dev/null; sysctl -qw kernel.bpf_stats_enabled=0; exit $rc' EXIT
sleep 1
sysctl -qw kernel.bpf_stats_enabled=1
for mode in ${HOOK_MODES:-socket tracepoints}; do
  printf 'prometheus_export:\n  port: %s\ndiscovery:\n  min_process_age: 0s\n  instrument:\n    - open_ports: "%s"\nebpf:\n  hook_mode: %s\n' \
    "$MPORT" "$PORT" "$mode" >"$tmp/beyla.yml"
  "$T/release/beyla" --config "$tmp/beyla.yml" >"$tmp/agent.log" 2>&1 &
  agent=$!
  for _ in $(seq 100); do
    curl -sf "127.0.0.1:$MPORT/internal/metrics" | grep -q '^beyla_instrumented_processes 1' && break
    sleep 0.1
  done
  ids="$(grep -h '^prog_id:' /proc/$agent/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u | tr '\n' ' ')"
  bpftool prog show -j >"$tmp/before.json"
  wrk -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$PORT/ping" >"$tmp/wrk.txt" &
  w=$!
  sleep 1
  perf record -q -a -F 999 -g -o "$tmp/perf.data" -- sleep $((SECS - 2)) 2>/dev/null
  wait $w
  bpftool prog show -j >"$tmp/after.json"
  echo
  echo "## ebpf.hook_mode=$mode: $(grep Requests/sec "$tmp/wrk.txt")"
  echo "### CPU samples by process (100% = both vCPUs)"
  perf report -i "$tmp/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep '%' | awk 'NR<=6'
  echo "### agent (beyla, beyla-ringbuf threads): hottest symbols"
  perf report -i "$tmp/perf.data" --no-children --comm beyla,beyla-ringbuf --sort sym --stdio -g none 2>/dev/null |
    grep '%' | awk 'NR<=14'
  echo "### rust-http: share of its samples in BPF programs, helpers and the syscall tracepoint path"
  perf report -i "$tmp/perf.data" --no-children --comm rust-http --sort sym --stdio -g none 2>/dev/null | grep '%' |
    awk '{p=$1; sub("%","",p); t+=p} /bpf|perf_syscall|htab|ringbuf|copy_from_kernel_nofault|probe_read|lru|irq_work|syscall_exit_work|syscall_enter|syscall_trace|sk_storage|local_storage|__traceiter|trace_sock/ {b+=p}
         END {printf "rust-http %.1f%% of all samples, of which BPF/tracepoint %.1f%% (%.0f%% of the app)\n", t, b, 100*b/t}'
  echo "### BPF programs of the agent during the run (bpf_stats)"
  python3 - "$tmp/before.json" "$tmp/after.json" "$ids" <<'EOF'
import json, sys
b = {p["id"]: p for p in json.load(open(sys.argv[1]))}
a = {p["id"]: p for p in json.load(open(sys.argv[2]))}
ids = {int(x) for x in sys.argv[3].split()}
rows = []
for i in ids:
    if i in a:
        ns = a[i].get("run_time_ns", 0) - b.get(i, {}).get("run_time_ns", 0)
        n = a[i].get("run_cnt", 0) - b.get(i, {}).get("run_cnt", 0)
        if n:
            rows.append((ns, n, a[i]["name"]))
print(f"{'program':<16} {'runs':>10} {'total ms':>10} {'ns/run':>8}")
for ns, n, name in sorted(rows, reverse=True):
    print(f"{name:<16} {n:>10} {ns / 1e6:>10.1f} {ns / n:>8.0f}")
print(f"{'all':<16} {sum(r[1] for r in rows):>10} {sum(r[0] for r in rows) / 1e6:>10.1f}")
EOF
  kill "$agent"
  wait "$agent" 2>/dev/null || true
done
