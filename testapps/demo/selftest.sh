#!/usr/bin/env bash
# Self-test of the demo system without the agent: builds it, starts 3 workers, the backend and
# the frontend on free ports with failure injection on, runs loadgen for N requests and checks
# that every app's counters agree exactly with the others':
#   loadgen sent == sum(by_status) == frontend factorial_requests, status by status
#   frontend backend_calls == frontend factorial_requests == backend factorial_requests
#   backend 500 == injected + worker_error; fan-out == 3 x (backend requests not injected)
#   backend fanout_calls[code] == sum of workers' multiply_calls[code], and per worker address
#   both failure paths (backend injected, worker gRPC Internal) occurred
# then checks a few results against Python's math.factorial. Exits 1 on any mismatch.
#   testapps/demo/selftest.sh [-n 600] [--go 1.23]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
N=600 GOVER=""
while (($#)); do
  case $1 in
    -n) N=$2; shift 2 ;;
    --go) GOVER=$2; shift 2 ;;
    *) echo "usage: $0 [-n REQUESTS] [--go VERSION]" >&2; exit 2 ;;
  esac
done
if [[ -n $GOVER ]]; then
  "$HERE/../build-go.sh" "$GOVER"
  DEMO_BIN="$HERE/../build/go$GOVER/demo"
else
  "$HERE/build.sh"
  DEMO_BIN="$HERE/../build/demo"
fi
PY=/usr/bin/python3; [[ -x $PY ]] || PY=python3

DEMO_DIR="$(mktemp -d)"
BACKEND_FAIL_RATE=0.1 WORKER_FAIL_RATE=0.05 DEMO_SEED=${DEMO_SEED:-42}
source "$HERE/lib.sh"
read -r FRONTEND_PORT BACKEND_PORT w1 w2 w3 s1 s2 s3 <<<"$(demo_free_ports 8)"
WORKER_PORTS="$w1 $w2 $w3" WORKER_STATS_PORTS="$s1 $s2 $s3"
cleanup() { demo_stop; rm -rf "$DEMO_DIR"; }
trap cleanup EXIT

echo "selftest: binaries $DEMO_BIN ($(go version "$DEMO_BIN/backend" 2>/dev/null | awk '{print $2}' || true))"
demo_start
echo "selftest: frontend :$FRONTEND_PORT, backend :$BACKEND_PORT, workers :$w1 :$w2 :$w3 (stats :$s1 :$s2 :$s3)"
rc=0
"$DEMO_BIN/loadgen" -url "http://127.0.0.1:$FRONTEND_PORT" -n "$N" -concurrency 8 -max-n 400 -seed 7 \
  >"$DEMO_DIR/loadgen.json" 2>"$DEMO_DIR/loadgen.err" || rc=$?
if ((rc != 0)); then
  echo "selftest: FAIL loadgen exited $rc: $(cat "$DEMO_DIR/loadgen.json" "$DEMO_DIR/loadgen.err")" >&2
  exit 1
fi
for u in "frontend $FRONTEND_PORT" "backend $BACKEND_PORT" "worker1 $s1" "worker2 $s2" "worker3 $s3"; do
  set -- $u
  curl -sf --max-time 5 "http://127.0.0.1:$2/stats" >"$DEMO_DIR/$1.json" || { echo "selftest: FAIL GET $1 /stats" >&2; exit 1; }
done

"$PY" - "$DEMO_DIR" "$N" "$w1 $w2 $w3" <<'PYEOF'
import json, sys
d, n, wports = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
load = lambda name: json.load(open(f"{d}/{name}.json"))
lg, fe, be = load("loadgen"), load("frontend")["counters"], load("backend")["counters"]
ws = [load(f"worker{i}")["counters"].get("multiply_calls", {}) for i in (1, 2, 3)]
fails = []
def check(label, got, want):
    ok = got == want
    print(f"  {'ok  ' if ok else 'FAIL'} {label}: {got}" + ("" if ok else f", want {want}"))
    if not ok:
        fails.append(label)
def total(m): return sum(m.values())

print(f"loadgen:  {json.dumps(lg)}")
print(f"frontend: {json.dumps(fe, sort_keys=True)}")
print(f"backend:  {json.dumps(be, sort_keys=True)}")
for i, w in enumerate(ws, 1):
    print(f"worker{i}:  {json.dumps(w, sort_keys=True)}")
check("loadgen sent", lg["sent"], n)
check("loadgen transport errors", lg["transport_errors"], 0)
check("loadgen sum(by_status) == sent", total(lg["by_status"]), lg["sent"])
check("frontend factorial_requests == loadgen by_status", fe.get("factorial_requests", {}), lg["by_status"])
check("frontend: no other requests", (fe.get("page_requests"), fe.get("other_requests")), (None, None))
check("frontend backend_calls == factorial_requests", fe.get("backend_calls", {}), fe.get("factorial_requests", {}))
bq = be.get("factorial_requests", {})
check("backend factorial_requests == frontend backend_calls", bq, fe.get("backend_calls", {}))
check("backend: statuses are 200 and 500 only", sorted(bq), ["200", "500"])
f = be.get("failures", {})
check("backend 500 == injected + worker_error", bq.get("500", 0), f.get("injected", 0) + f.get("worker_error", 0))
check("backend: failures are injected / worker_error only", sorted(f), ["injected", "worker_error"])
fanned = total(bq) - f.get("injected", 0)
check("backend fan-out == 3 x requests not injected", total(be.get("fanout_calls", {})), 3 * fanned)
wsum = {}
for w in ws:
    for code, c in w.items():
        wsum[code] = wsum.get(code, 0) + c
check("backend fanout_calls == sum of workers' multiply_calls", be.get("fanout_calls", {}), wsum)
check("gRPC codes are OK and Internal only", sorted(wsum), ["Internal", "OK"])
byw = be.get("fanout_by_worker", {})
for port, w in zip(wports, ws):
    mine = {k.split("/", 1)[1]: v for k, v in byw.items() if k.startswith(f"127.0.0.1:{port}/")}
    check(f"backend calls to :{port} == that worker's multiply_calls", mine, w)
    check(f"worker :{port} got calls", total(w) > 0, True)
check("injected backend failures occurred", f.get("injected", 0) > 0, True)
check("worker failures occurred", wsum.get("Internal", 0) > 0 and f.get("worker_error", 0) > 0, True)
if fails:
    print(f"selftest: {len(fails)} counter check(s) FAILED")
    sys.exit(1)
PYEOF

# Results: retry injected 500s (random); a 400 for bad n; then compare with Python.
fails=0
for n in 0 1 2 3 20 100 1000; do
  got="" code=""
  for _ in $(seq 30); do
    code="$(curl -s -o "$DEMO_DIR/body" -w '%{http_code}' --max-time 10 "http://127.0.0.1:$FRONTEND_PORT/factorial/$n" || true)"
    [[ $code == 200 ]] && { got="$(cat "$DEMO_DIR/body")"; break; }
  done
  want="$("$PY" -c "import math,sys; sys.set_int_max_str_digits(0) if hasattr(sys,'set_int_max_str_digits') else None; print(math.factorial($n))")"
  if [[ $got == "$want" ]]; then echo "  ok   GET /factorial/$n == $n! (${#want} digits)"
  else echo "  FAIL GET /factorial/$n: status $code, '${got:0:60}'"; fails=$((fails + 1)); fi
done
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FRONTEND_PORT/factorial/abc")"
if [[ $code == 400 ]]; then echo "  ok   GET /factorial/abc -> 400"; else echo "  FAIL GET /factorial/abc -> $code, want 400"; fails=$((fails + 1)); fi
code="$(curl -s -o "$DEMO_DIR/body" -w '%{http_code}' "http://127.0.0.1:$FRONTEND_PORT/")"
if [[ $code == 200 ]] && grep -q "<html>" "$DEMO_DIR/body"; then echo "  ok   GET / -> 200 HTML"; else echo "  FAIL GET / -> $code"; fails=$((fails + 1)); fi
if ((fails > 0)); then echo "selftest: $fails result check(s) FAILED"; exit 1; fi
echo "selftest: demo counters agree ($N requests) and results are right"
