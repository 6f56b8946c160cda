#!/usr/bin/env bash
# Smoke test for the HTTP test services: builds them, starts every app (3 instances each with
# different DOWNSTREAM_URL settings) and checks every route, Content-Length, keep-alive,
# Connection: close, a 100000-byte binary echo, a body sent in several writes and /call.
# Usage: testapps/smoke.sh [lang...]   (default: python node java go rust demo). Exits 1 on any mismatch.
# `demo` is the demo system's own self-test (testapps/demo/selftest.sh), run after the apps;
# `go1.23` (any go1.N) is go-http built by testapps/build-go.sh 1.23 (build it first).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$HERE/build.sh"
ARGS=("$@"); [[ ${#ARGS[@]} -gt 0 ]] || ARGS=(python node java go rust demo)
LANGS=() DEMO=0
for a in "${ARGS[@]}"; do if [[ $a == demo ]]; then DEMO=1; else LANGS+=("$a"); fi; done
PY=/usr/bin/python3; [[ -x $PY ]] || PY=python3
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
FAILS=0
pass() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; FAILS=$((FAILS + 1)); }

# Three distinct free ports per app.
n=${#LANGS[@]}
read -r -a PORTS <<<"$("$PY" -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' $((3 * n)))"

launcher() { # launcher LANG: the app's start script
  case $1 in
    go1.*) echo "$HERE/build/$1/run-go" ;;
    *) echo "$HERE/build/run-$1" ;;
  esac
}
start() { # start LANG PORT DOWNSTREAM_URL-or-empty
  local lang=$1 port=$2 url=$3
  if [[ -n $url ]]; then
    DOWNSTREAM_URL=$url "$(launcher "$lang")" "$port" >"$TMP/$port.out" 2>"$TMP/$port.err" &
  else
    env -u DOWNSTREAM_URL "$(launcher "$lang")" "$port" >"$TMP/$port.out" 2>"$TMP/$port.err" &
  fi
  PIDS+=($!)
  echo $! >"$TMP/$port.pid"
}
# Instance A -> next app's /ping (called:200), B -> next app's /error (called:500), C: no DOWNSTREAM_URL.
for i in "${!LANGS[@]}"; do
  next=${PORTS[$(((i + 1) % n))]}
  start "${LANGS[$i]}" "${PORTS[$i]}" "http://127.0.0.1:$next/ping"
  start "${LANGS[$i]}" "${PORTS[$((n + i))]}" "http://127.0.0.1:$next/error"
  start "${LANGS[$i]}" "${PORTS[$((2 * n + i))]}" ""
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 300); do grep -q "listening on" "$TMP/$port.out" 2>/dev/null && break; sleep 0.1; done
done

head -c 100000 /dev/urandom >"$TMP/big.bin"

check() { # check LABEL WANT_STATUS WANT_BODY_FILE_OR_STRING CURL_ARGS...
  local label=$1 want_status=$2 want=$3; shift 3
  local status
  status="$(curl -s -o "$TMP/body" -D "$TMP/hdr" -w '%{http_code}' --max-time 15 "$@" || true)"
  if [[ -f $want ]]; then cp "$want" "$TMP/want"; else printf '%s' "$want" >"$TMP/want"; fi
  local len; len=$(wc -c <"$TMP/want")
  if [[ $status != "$want_status" ]]; then
    fail "$label: status $status, want $want_status"
  elif ! cmp -s "$TMP/body" "$TMP/want"; then
    fail "$label: body '$(head -c 80 "$TMP/body")', want '$(head -c 80 "$TMP/want")'"
  elif ! grep -qi "^content-length: $len"$'\r'"\?$" "$TMP/hdr"; then
    fail "$label: missing 'Content-Length: $len'"
  else
    pass "$label -> $status $( ((len > 40)) && echo "($len bytes)" || cat "$TMP/want")"
  fi
}

for i in "${!LANGS[@]}"; do
  lang=${LANGS[$i]} P=${PORTS[$i]} PB=${PORTS[$((n + i))]} PC=${PORTS[$((2 * n + i))]}
  U="http://127.0.0.1:$P" next=${LANGS[$(((i + 1) % n))]}
  echo "[$lang] port $P (downstream: $next)"
  out="$(cat "$TMP/$P.out")"
  if [[ $out == "listening on $P" ]]; then pass "stdout is exactly 'listening on $P'"
  else fail "stdout '$out', want 'listening on $P' (stderr: $(head -c 300 "$TMP/$P.err"))"; continue; fi
  exe="$(basename "$(readlink "/proc/$(cat "$TMP/$P.pid")/exe")")"
  case $exe in bash | sh | dash) fail "launcher did not exec (pid runs $exe)" ;; *) pass "launcher exec'd ($exe)" ;; esac

  check "GET /ping" 200 pong "$U/ping"
  check "GET /users/42" 200 '{"id":"42"}' "$U/users/42"
  check "GET /users/a-B_9" 200 '{"id":"a-B_9"}' "$U/users/a-B_9"
  check "GET /error" 500 boom "$U/error"
  check "GET /nope" 404 "not found" "$U/nope"
  check "GET /echo" 404 "not found" "$U/echo"
  check "POST /echo small" 200 hello --data-binary hello "$U/echo"
  check "POST /echo empty" 200 "" -X POST "$U/echo"
  check "POST /echo 100000 random bytes" 200 "$TMP/big.bin" --data-binary @"$TMP/big.bin" "$U/echo"
  check "GET /call" 200 called:200 "$U/call"
  check "GET /call (downstream 500)" 200 called:500 "http://127.0.0.1:$PB/call"
  check "GET /call (no DOWNSTREAM_URL)" 502 "DOWNSTREAM_URL not set" "http://127.0.0.1:$PC/call"

  # Keep-alive: three requests (the first with a big body) on one connection; num_connects is 0 on reuse.
  w=(-s --max-time 15 -w '%{num_connects} ')
  conns="$(curl "${w[@]}" --data-binary @"$TMP/big.bin" -o "$TMP/ka1" "$U/echo" \
    --next "${w[@]}" -o "$TMP/ka2" "$U/ping" --next "${w[@]}" -o "$TMP/ka3" "$U/users/7" || true)"
  if [[ $conns == "1 0 0 " ]] && cmp -s "$TMP/ka1" "$TMP/big.bin" &&
    [[ $(cat "$TMP/ka2" "$TMP/ka3") == 'pong{"id":"7"}' ]]; then
    pass "keep-alive: POST /echo (100000 bytes) + GET /ping + GET /users/7 on one connection"
  else fail "keep-alive: new connections per request: '$conns' (want '1 0 0 ')"; fi

  # Body in several writes with pauses, Connection: close => server must answer and close.
  rc=0
  (
    exec 3<>"/dev/tcp/127.0.0.1/$P"
    printf 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\nConnection: close\r\n\r\n' >&3
    for part in 'part1' '-part' '2-end'; do sleep 0.2; printf '%s' "$part" >&3; done
    timeout 5 cat <&3 >"$TMP/raw"
  ) || rc=$?
  resp="$(tr -d '\r' <"$TMP/raw")"
  if [[ $rc != 0 ]]; then
    fail "split-write echo: server did not close the connection after Connection: close (rc $rc)"
  elif [[ $resp == "HTTP/1.1 200"* && $resp == *$'\n\npart1-part2-end' ]]; then
    pass "POST /echo in 3 delayed writes + Connection: close (server closed)"
  else fail "split-write echo: '$(head -c 200 <<<"$resp")'"; fi
done

if ((DEMO)); then
  echo "[demo] testapps/demo/selftest.sh"
  if "$HERE/demo/selftest.sh" | sed 's/^/  /'; then pass "demo self-test"; else fail "demo self-test"; fi
fi

if ((FAILS > 0)); then echo "smoke: $FAILS check(s) FAILED"; exit 1; fi
echo "smoke: all checks passed for: ${ARGS[*]}"
