# `nix run .#demo` (as root): what scripts/run-demo.sh does, from the store. Starts the Python
# sample service (testapps/python-http) on $APP_PORT (8080), the agent instrumenting it with
# Prometheus metrics on $METRICS_PORT (9400) and one printed line per request, and a little
# traffic. Ctrl-C stops everything.
{ writeShellApplication
, coreutils
, curl
, python3
, agent
}:

writeShellApplication {
  name = "beyla-demo";
  runtimeInputs = [ agent coreutils curl python3 ];
  text = ''
    if [ "$(id -u)" -ne 0 ]; then
      echo "beyla-demo: the agent loads BPF programs and must run as root" >&2
      exit 1
    fi

    APP_PORT=''${APP_PORT:-8080}
    METRICS_PORT=''${METRICS_PORT:-9400}

    pids=()
    cleanup() { kill "''${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
    trap cleanup EXIT INT TERM

    python3 ${../testapps/python-http/app.py} "$APP_PORT" &
    pids+=($!)

    BEYLA_OPEN_PORT=$APP_PORT BEYLA_PROMETHEUS_PORT=$METRICS_PORT BEYLA_TRACE_PRINTER=text \
      beyla --config ${../deploy/examples/demo.yml} &
    pids+=($!)

    # Light traffic: a few routes, one error, forever.
    (
      while sleep 1; do
        for path in /ping "/users/$((RANDOM % 100))" /error /nope; do
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
  '';
}
