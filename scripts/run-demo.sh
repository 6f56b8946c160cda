#!/usr/bin/env bash
# Sets up the machine, builds the agent and the test apps, starts the Python sample service on
# :8080 and the agent instrumenting it, serving Prometheus metrics on :9400/metrics and
# printing one line per request. A small loop sends requests so there is something to see.
# Needs root (the agent loads BPF programs). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "run-demo.sh: the agent loads BPF programs and must run as root (sudo $0)" >&2
  exit 1
fi

APP_PORT=${APP_PORT:-8080}
METRICS_PORT=${METRICS_PORT:-9400}

bash scripts/setup.sh
bash testapps/build.sh
cargo build --release -p beyla

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

testapps/build/run-python "$APP_PORT" &
pids+=($!)

BEYLA_OPEN_PORT=$APP_PORT BEYLA_PROMETHEUS_PORT=$METRICS_PORT BEYLA_TRACE_PRINTER=text \
  target/release/beyla --config deploy/examples/demo.yml &
pids+=($!)

# Light traffic: a few routes, one error, forever.
(
  while sleep 1; do
    for path in /ping /users/$((RANDOM % 100)) /error /nope; do
      curl -s -o /dev/null "http://127.0.0.1:$APP_PORT$path" || true
    done
  done
) &
pids+=($!)

echo
echo "sample service: http://127.0.0.1:$APP_PORT/ping"
echo "metrics:        curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep http_server"
echo "internal:       curl -s http://127.0.0.1:$METRICS_PORT/internal/metrics"
echo "Ctrl-C to stop."
wait
