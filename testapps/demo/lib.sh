# Sourced by testapps/demo/{run,selftest}.sh: starts and stops the demo processes.
# Settings (set before demo_start; defaults in brackets):
#   DEMO_BIN [testapps/build/demo]  directory holding loadgen, frontend, backend, worker
#   DEMO_DIR (required)             state dir: <name>.out/.err logs, pids (one "name pid" a line)
#   FRONTEND_PORT [8080] BACKEND_PORT [8081] WORKER_PORTS ["5001 5002 5003"]
#   WORKER_STATS_PORTS ["6001 6002 6003"] BACKEND_FAIL_RATE [0.05] WORKER_FAIL_RATE [0.02]
#   DEMO_SEED [0: time based]       base of the apps' random seeds
# Every app is bound to 127.0.0.1 and exec'd directly, so the recorded PID is the app's own.

DEMO_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEMO_BIN="${DEMO_BIN:-$DEMO_HERE/../build/demo}"
FRONTEND_PORT="${FRONTEND_PORT:-8080}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
WORKER_PORTS="${WORKER_PORTS:-5001 5002 5003}"
WORKER_STATS_PORTS="${WORKER_STATS_PORTS:-6001 6002 6003}"
BACKEND_FAIL_RATE="${BACKEND_FAIL_RATE:-0.05}"
WORKER_FAIL_RATE="${WORKER_FAIL_RATE:-0.02}"
DEMO_SEED="${DEMO_SEED:-0}"
DEMO_PIDS=()

# demo_spawn NAME BIN ARGS...: starts one app in the background, logs into $DEMO_DIR/NAME.{out,err}.
demo_spawn() {
  local name=$1 bin=$2; shift 2
  "$DEMO_BIN/$bin" "$@" >"$DEMO_DIR/$name.out" 2>"$DEMO_DIR/$name.err" &
  DEMO_PIDS+=($!)
  echo "$name $!" >>"$DEMO_DIR/pids"
}

# demo_wait_listening NAME COUNT: waits (10 s) for COUNT "listening on" lines from NAME.
demo_wait_listening() {
  local name=$1 count=$2 i
  for i in $(seq 100); do
    (($(grep -c "listening on" "$DEMO_DIR/$name.out" 2>/dev/null || true) >= count)) && return 0
    sleep 0.1
  done
  echo "demo: $name did not start: $(cat "$DEMO_DIR/$name.err" "$DEMO_DIR/$name.out" 2>/dev/null | head -c 600)" >&2
  return 1
}

# demo_start: workers, backend, frontend (not loadgen); returns once all are listening.
demo_start() {
  local i port sport workers="" seed=$DEMO_SEED
  read -r -a wports <<<"$WORKER_PORTS"
  read -r -a sports <<<"$WORKER_STATS_PORTS"
  for bin in loadgen frontend backend worker; do
    [[ -x $DEMO_BIN/$bin ]] || { echo "demo: $DEMO_BIN/$bin missing (testapps/demo/build.sh)" >&2; return 1; }
  done
  : >"$DEMO_DIR/pids"
  for i in "${!wports[@]}"; do
    port=${wports[$i]} sport=${sports[$i]}
    ((seed == 0)) || seed=$((DEMO_SEED + 10 + i))
    demo_spawn "worker$((i + 1))" worker -addr "127.0.0.1:$port" -stats-addr "127.0.0.1:$sport" \
      -fail-rate "$WORKER_FAIL_RATE" -seed "$seed"
    workers+="${workers:+,}127.0.0.1:$port"
  done
  # Each tier starts once the one it calls listens.
  for i in "${!wports[@]}"; do demo_wait_listening "worker$((i + 1))" 2 || return 1; done
  ((seed == 0)) || seed=$((DEMO_SEED + 1))
  demo_spawn backend backend -addr "127.0.0.1:$BACKEND_PORT" -workers "$workers" \
    -fail-rate "$BACKEND_FAIL_RATE" -seed "$seed"
  demo_wait_listening backend 1 || return 1
  demo_spawn frontend frontend -addr "127.0.0.1:$FRONTEND_PORT" -backend "http://127.0.0.1:$BACKEND_PORT"
  demo_wait_listening frontend 1
}

# demo_stop: SIGTERM to every process started here (by PID), then waits for them.
demo_stop() {
  local p
  for p in "${DEMO_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${DEMO_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  DEMO_PIDS=()
}

# demo_free_ports N: prints N distinct free TCP ports on 127.0.0.1.
demo_free_ports() {
  local py=/usr/bin/python3
  [[ -x $py ]] || py=python3
  "$py" -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
