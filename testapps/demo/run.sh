#!/usr/bin/env bash
# Starts the whole demo system on this machine, no Kubernetes: 3 workers (gRPC), the backend,
# the frontend, the beyla-rs agent instrumenting all of them, then loadgen. Ctrl-C stops it all.
#   sudo testapps/demo/run.sh                     # agent + steady load (10 req/s) until Ctrl-C
#   testapps/demo/run.sh --no-agent               # the demo alone (no root needed)
#   sudo testapps/demo/run.sh --requests 1000 --state-dir /tmp/demo --exit
# Options:
#   --agent PATH        agent binary (default: target/release/beyla, else target/debug/beyla;
#                       built with `cargo build --release -p beyla` when neither exists)
#   --no-agent          run the apps only
#   --go VER            use the apps built with Go VER (testapps/build-go.sh VER), e.g. 1.23
#   --requests N        loadgen sends N requests, then stops (default: no limit)
#   --duration D        loadgen stops after D (Go duration, e.g. 30s)
#   --rate R            requests per second in all (default 10; 0 = as fast as possible)
#   --concurrency C     loadgen connections (default 4)
#   --no-loadgen        start everything but loadgen
#   --trace-printer F   agent's trace_printer: text (default), json, json_indent, disabled
#   --state-dir DIR     keep logs and state there (default: a temp dir, removed at exit)
#   --exit              exit once loadgen is done (default: keep running until Ctrl-C)
# Env: FRONTEND_PORT (8080) BACKEND_PORT (8081) WORKER_PORTS ("5001 5002 5003")
#   WORKER_STATS_PORTS ("6001 6002 6003") BACKEND_FAIL_RATE (0.05) WORKER_FAIL_RATE (0.02)
#   METRICS_PORT (9400) DEMO_SEED (0: random)
# State dir: pids ("name pid" lines), <app>.out/.err, beyla.yml, agent.log, `ready` (apps up and,
# with the agent, every one of them instrumented), loadgen.json (loadgen's summary, when done).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
AGENT="" USE_AGENT=1 GOVER="" REQUESTS=0 DURATION=0 RATE=10 CONC=4 LOADGEN=1 TP=text STATE="" EXIT=0
while (($#)); do
  case $1 in
    --agent) AGENT=$2; shift 2 ;;
    --no-agent) USE_AGENT=0; shift ;;
    --go) GOVER=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --no-loadgen) LOADGEN=0; shift ;;
    --trace-printer) TP=$2; shift 2 ;;
    --state-dir) STATE=$2; shift 2 ;;
    --exit) EXIT=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
METRICS_PORT="${METRICS_PORT:-9400}"
PY=/usr/bin/python3; [[ -x $PY ]] || PY=python3

if ((USE_AGENT)); then
  if [[ $(id -u) != 0 ]]; then
    echo "run.sh: the agent loads BPF programs and must run as root (sudo $0, or --no-agent)" >&2
    exit 1
  fi
  if [[ -z $AGENT ]]; then
    for a in "$REPO/target/release/beyla" "$REPO/target/debug/beyla"; do
      [[ -x $a ]] && { AGENT=$a; break; }
    done
  fi
  if [[ -z $AGENT ]]; then
    echo "run.sh: no agent binary; building it (cargo build --release -p beyla)"
    (cd "$REPO" && cargo build --release -p beyla)
    AGENT="$REPO/target/release/beyla"
  fi
  [[ -x $AGENT ]] || { echo "run.sh: agent $AGENT is not executable" >&2; exit 1; }
fi

if [[ -n $GOVER ]]; then
  "$HERE/../build-go.sh" "$GOVER"
  DEMO_BIN="$HERE/../build/go$GOVER/demo"
else
  "$HERE/build.sh"
  DEMO_BIN="$HERE/../build/demo"
fi

if [[ -n $STATE ]]; then
  mkdir -p "$STATE" && DEMO_DIR="$(cd "$STATE" && pwd)" KEEP=1
  rm -f "$DEMO_DIR"/{ready,loadgen.json,loadgen.gate,pids}
else
  DEMO_DIR="$(mktemp -d)" KEEP=0
fi
source "$HERE/lib.sh"
AGENT_PID=""
cleanup() {
  trap - EXIT INT TERM
  demo_stop
  if [[ -n $AGENT_PID ]]; then kill "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; fi
  ((KEEP)) || rm -rf "$DEMO_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# busy PORT: true when something already listens on 127.0.0.1:PORT.
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $FRONTEND_PORT $BACKEND_PORT $WORKER_PORTS $WORKER_STATS_PORTS $( ((USE_AGENT)) && echo "$METRICS_PORT"); do
  if busy "$p"; then echo "run.sh: port $p is in use (set the *_PORT(S) variables, see --help)" >&2; exit 1; fi
done

demo_start
echo "run.sh: apps up ($(go version "$DEMO_BIN/frontend" 2>/dev/null | awk '{print $2}' || echo "$DEMO_BIN")): frontend :$FRONTEND_PORT, backend :$BACKEND_PORT, workers :${WORKER_PORTS// / :}"

# The loadgen starts now (so the agent can instrument it) but waits for the gate file.
LOADGEN_PID=""
if ((LOADGEN)); then
  "$DEMO_BIN/loadgen" -url "http://127.0.0.1:$FRONTEND_PORT" -n "$REQUESTS" -duration "$DURATION" \
    -rate "$RATE" -concurrency "$CONC" -gate "$DEMO_DIR/loadgen.gate" \
    $( ((REQUESTS == 0)) && echo "-report 10s") >"$DEMO_DIR/loadgen.json.tmp" 2>"$DEMO_DIR/loadgen.err" &
  LOADGEN_PID=$!
  DEMO_PIDS+=("$LOADGEN_PID")
  echo "loadgen $LOADGEN_PID" >>"$DEMO_DIR/pids"
fi

if ((USE_AGENT)); then
  {
    echo "# Written by testapps/demo/run.sh: the demo's processes, selected by port (loadgen by path)."
    echo "log_level: info"
    echo "trace_printer: $TP"
    echo "discovery:"
    echo "  poll_interval: 500ms"
    echo "  min_process_age: 0s"
    echo "  instrument:"
    echo "    - { open_ports: \"$FRONTEND_PORT\", name: frontend }"
    echo "    - { open_ports: \"$BACKEND_PORT\", name: backend }"
    echo "    - { open_ports: \"${WORKER_PORTS// /,}\", name: worker }"
    echo "    - { exe_path: \"$(cd "$DEMO_BIN" && pwd)/loadgen\", name: loadgen }"
    echo "routes:"
    echo "  unmatched: heuristic"
    echo "prometheus_export:"
    echo "  port: $METRICS_PORT"
    echo "  path: /metrics"
  } >"$DEMO_DIR/beyla.yml"
  "$AGENT" --config "$DEMO_DIR/beyla.yml" >"$DEMO_DIR/agent.log" 2>&1 &
  AGENT_PID=$!
  echo "run.sh: agent $AGENT (pid $AGENT_PID), log $DEMO_DIR/agent.log"
  # Wait (60 s) until the agent reports every demo process instrumented.
  mapfile -t want < <(awk '{print $2}' "$DEMO_DIR/pids")
  for i in $(seq 600); do
    kill -0 "$AGENT_PID" 2>/dev/null || { echo "run.sh: the agent exited:" >&2; tail -20 "$DEMO_DIR/agent.log" >&2; exit 1; }
    missing=()
    for p in "${want[@]}"; do grep -q "Process instrumented.*pid=$p\b" "$DEMO_DIR/agent.log" || missing+=("$p"); done
    ((${#missing[@]} == 0)) && break
    sleep 0.1
  done
  if ((${#missing[@]} > 0)); then
    echo "run.sh: WARNING: after 60 s the agent has not instrumented pid(s) ${missing[*]} (see $DEMO_DIR/agent.log)" >&2
  else
    echo "run.sh: agent instrumented all ${#want[@]} demo processes"
  fi
fi
touch "$DEMO_DIR/ready"

cat <<EOM

demo:        http://127.0.0.1:$FRONTEND_PORT/   (GET /factorial/{n})
app stats:   curl -s 127.0.0.1:$FRONTEND_PORT/stats   127.0.0.1:$BACKEND_PORT/stats   workers: ${WORKER_STATS_PORTS// /, } /stats
EOM
if ((USE_AGENT)); then
  cat <<EOM
metrics:     curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep -E 'http_(server|client)|rpc_'
internal:    curl -s http://127.0.0.1:$METRICS_PORT/internal/metrics
spans:       tail -f $DEMO_DIR/agent.log
EOM
fi
echo "state dir:   $DEMO_DIR$( ((KEEP)) || echo " (removed at exit)")"

if [[ -n $LOADGEN_PID ]]; then
  touch "$DEMO_DIR/loadgen.gate"
  if ((REQUESTS == 0)) && [[ $DURATION == 0 ]]; then
    echo "loadgen:     $RATE req/s until Ctrl-C (progress every 10 s in $DEMO_DIR/loadgen.err)"
  fi
  rc=0
  wait "$LOADGEN_PID" || rc=$?
  mv -f "$DEMO_DIR/loadgen.json.tmp" "$DEMO_DIR/loadgen.json"
  echo "loadgen done (exit $rc): $(cat "$DEMO_DIR/loadgen.json")"
  ((rc == 0)) || cat "$DEMO_DIR/loadgen.err" >&2
  for u in "frontend:$FRONTEND_PORT" "backend:$BACKEND_PORT" $(i=1; for p in $WORKER_STATS_PORTS; do echo "worker$i:$p"; i=$((i + 1)); done); do
    echo "${u%%:*}: $(curl -s --max-time 5 "http://127.0.0.1:${u#*:}/stats" |
      "$PY" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["counters"], separators=(",", ":")))' 2>&1)"
  done
  ((EXIT)) && exit "$rc"
fi
if ((EXIT)); then exit 0; fi
echo "Ctrl-C to stop."
while true; do
  sleep 3600 &
  DEMO_PIDS+=($!)
  wait $! || true
done
