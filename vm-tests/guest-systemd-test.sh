#!/bin/bash
# Runs INSIDE a `vm-tests --systemd` guest (started by run-systemd.sh): Debian bookworm with
# systemd as PID 1, the host root read-only under $VM_TESTS_HOST_ROOT. Installs the agent and
# deploy/systemd/beyla.service unchanged, starts the Go test service as a systemd service of its
# own, starts beyla, checks the agent runs as a dynamic non-root user with exactly the unit's
# capabilities and hardening, sends 7 GET /ping and 3 GET /error, and asserts the exact counts
# on /metrics. Then applies the drop-in the unit's header documents for kernels with
# perf_event_paranoid <= 2 (base capabilities only), and checks it the same way with 2 GET /ping.
# On failure prints the journal of both units between markers and exits 1.
# Env (host paths): REPO (the checkout), AGENT (the agent binary), GO_APP (testapps' go-http),
# BEYLA_CAPS (the plain unit's capabilities per deploy/systemd/hardening.json, space-separated),
# BEYLA_BASE_CAPS (its base set: what the documented drop-in leaves).
set -uo pipefail
H=${VM_TESTS_HOST_ROOT:?not in a vm-tests --systemd guest}
: "${REPO:?}" "${AGENT:?}" "${GO_APP:?}" "${BEYLA_CAPS:?}" "${BEYLA_BASE_CAPS:?}"
APP_PORT=8080
METRICS_PORT=9400
PINGS=7
ERRORS=3

# fd 3: the console, also from inside wait_until's silenced checks.
exec 3>&1
say() { echo "systemd-test: $*" >&3; }

dump_journal() {
  exec 1>&3 2>&3
  echo "==== BEGIN guest journal ===="
  systemctl status beyla.service testapp.service --no-pager -l 2>&1
  echo "---- journalctl -u beyla.service"
  journalctl -u beyla.service --no-pager -o short-monotonic 2>&1 | tail -n 200
  echo "---- journalctl -u testapp.service"
  journalctl -u testapp.service --no-pager -o short-monotonic 2>&1 | tail -n 20
  echo "==== END guest journal ===="
}

fail() {
  exec 1>&3 2>&3
  echo "systemd-test: FAIL: $*"
  dump_journal
  echo "SYSTEMD-TEST-RESULT fail"
  exit 1
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every 0.5 s until it succeeds.
wait_until() {
  local secs=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start >= secs)) && fail "$what: not true after $secs s"
    sleep 0.5
  done
  say "$what (after $((SECONDS - start)) s)"
}

# Capability numbers (linux/capability.h).
declare -A CAPNUM=(
  [CAP_CHOWN]=0 [CAP_DAC_OVERRIDE]=1 [CAP_DAC_READ_SEARCH]=2 [CAP_FOWNER]=3 [CAP_FSETID]=4
  [CAP_KILL]=5 [CAP_SETGID]=6 [CAP_SETUID]=7 [CAP_SETPCAP]=8 [CAP_LINUX_IMMUTABLE]=9
  [CAP_NET_BIND_SERVICE]=10 [CAP_NET_BROADCAST]=11 [CAP_NET_ADMIN]=12 [CAP_NET_RAW]=13
  [CAP_IPC_LOCK]=14 [CAP_IPC_OWNER]=15 [CAP_SYS_MODULE]=16 [CAP_SYS_RAWIO]=17 [CAP_SYS_CHROOT]=18
  [CAP_SYS_PTRACE]=19 [CAP_SYS_PACCT]=20 [CAP_SYS_ADMIN]=21 [CAP_SYS_BOOT]=22 [CAP_SYS_NICE]=23
  [CAP_SYS_RESOURCE]=24 [CAP_SYS_TIME]=25 [CAP_SYS_TTY_CONFIG]=26 [CAP_MKNOD]=27 [CAP_LEASE]=28
  [CAP_AUDIT_WRITE]=29 [CAP_AUDIT_CONTROL]=30 [CAP_SETFCAP]=31 [CAP_MAC_OVERRIDE]=32
  [CAP_MAC_ADMIN]=33 [CAP_SYSLOG]=34 [CAP_WAKE_ALARM]=35 [CAP_BLOCK_SUSPEND]=36 [CAP_AUDIT_READ]=37
  [CAP_PERFMON]=38 [CAP_BPF]=39 [CAP_CHECKPOINT_RESTORE]=40
)
# cap_mask NAME...: the /proc/<pid>/status hex mask (16 digits) of these capabilities.
cap_mask() {
  local m=0 c
  for c in "$@"; do
    [[ -n ${CAPNUM[$c]:-} ]] || fail "unknown capability $c"
    m=$((m | (1 << CAPNUM[$c])))
  done
  printf '%016x' "$m"
}

say "kernel $(uname -r), systemd $(systemctl --version | head -n1 | cut -d' ' -f2)"
[[ $(cat /proc/1/comm) == systemd ]] || fail "PID 1 is $(cat /proc/1/comm), not systemd"

# 1. Install the agent, the unit (unchanged) and the configuration.
install -m 0755 "$H$AGENT" /usr/local/bin/beyla || fail "installing the agent $AGENT"
install -m 0644 "$H$REPO/deploy/systemd/beyla.service" /etc/systemd/system/beyla.service || fail "installing the unit"
cmp "$H$REPO/deploy/systemd/beyla.service" /etc/systemd/system/beyla.service || fail "the installed unit differs"
mkdir -p /etc/beyla
# The module's example settings (nixos-module/example-settings.yml) plus a quicker discovery
# scan, as vm-tests/nixos/machine.nix does.
cat >/etc/beyla/config.yml <<EOF
discovery:
  instrument:
    - open_ports: "$APP_PORT"
      name: testapp
  poll_interval: 1s
  min_process_age: 1s
routes:
  patterns: ["/users/{id}"]
  unmatched: heuristic
prometheus_export:
  port: $METRICS_PORT
  path: /metrics
EOF
/usr/local/bin/beyla config check /etc/beyla/config.yml || fail "beyla config check /etc/beyla/config.yml"

# 2. The test service, a unit of its own with another dynamic user.
install -m 0755 "$H$GO_APP" /usr/local/bin/go-http || fail "installing the test app $GO_APP"
cat >/etc/systemd/system/testapp.service <<EOF
[Unit]
Description=HTTP test service instrumented by beyla (testapps/go-http)

[Service]
ExecStart=/usr/local/bin/go-http $APP_PORT
DynamicUser=true
EOF
systemctl daemon-reload || fail "systemctl daemon-reload"
systemctl start testapp.service || fail "systemctl start testapp.service"
wait_until 30 "testapp answers on :$APP_PORT" curl -sf "http://127.0.0.1:$APP_PORT/ping"

# start_beyla: (re)starts the unit and waits until the agent traces testapp.
instrumented() {
  curl -sf "http://127.0.0.1:$METRICS_PORT/internal/metrics" | grep -Eq '^beyla_instrumented_processes [1-9]'
}
# serving: the agent answers on its port; fails at once when the unit's process has exited (a
# crash under the hardening would otherwise only show as a restart every RestartSec).
serving() {
  local restarts
  restarts=$(systemctl show -P NRestarts beyla.service)
  if [[ $restarts != 0 ]] || systemctl is-failed --quiet beyla.service; then
    fail "beyla.service exited (restarts: $restarts, state: $(systemctl is-active beyla.service))"
  fi
  curl -sf "http://127.0.0.1:$METRICS_PORT/internal/metrics"
}
start_beyla() {
  local start=$SECONDS
  systemctl restart beyla.service || fail "systemctl restart beyla.service"
  wait_until 120 "beyla serves :$METRICS_PORT" serving
  wait_until 120 "beyla instruments testapp" instrumented
  say "beyla started and instrumented testapp in $((SECONDS - start)) s"
}

# check_privileges CAP...: a dynamic user holding exactly these capabilities, NoNewPrivs, seccomp.
check_privileges() {
  local pid uid user want f got
  pid=$(systemctl show -P MainPID beyla.service)
  [[ $pid =~ ^[1-9][0-9]*$ ]] || fail "beyla.service has no main PID ($pid)"
  [[ $(cat "/proc/$pid/comm") == beyla ]] || fail "main PID $pid is $(cat "/proc/$pid/comm"), not beyla"
  uid=$(stat -c %u "/proc/$pid")
  user=$(stat -c %U "/proc/$pid")
  ((uid != 0)) || fail "beyla runs as root"
  ((uid >= 61184 && uid <= 65519)) || fail "beyla's uid $uid is not in systemd's DynamicUser range 61184-65519"
  say "beyla runs as $user (uid $uid, a DynamicUser)"
  want=$(cap_mask "$@")
  for f in CapInh CapPrm CapEff CapBnd CapAmb; do
    got=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$pid/status")
    [[ $got == "$want" ]] || fail "$f of beyla is $got, expected $want ($*)"
    say "$f $got = $*"
  done
  grep -Eq '^NoNewPrivs:[[:space:]]+1$' "/proc/$pid/status" || fail "beyla runs without NoNewPrivs"
  grep -Eq '^Seccomp:[[:space:]]+2$' "/proc/$pid/status" || fail "beyla runs without a seccomp filter (SystemCallFilter)"
  say "NoNewPrivs 1, Seccomp 2 (filter)"
  BEYLA_UID=$uid BEYLA_MASK=$want
}

# send PATH STATUS N: N GET requests, each on its own connection, each answered STATUS.
send() {
  local i code
  for ((i = 0; i < $3; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APP_PORT$1")
    [[ $code == "$2" ]] || fail "GET $1 returned $code, expected $2"
  done
  say "sent $3 GET $1 ($2)"
}

COUNT=http_server_request_duration_seconds_count
# count [LABEL=VALUE...]: sum of testapp's $COUNT series carrying all these labels.
count() {
  local m
  m=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics") || return 1
  printf '%s\n' "$m" | grep "^$COUNT{" | grep 'service_name="testapp"' | {
    local l kv
    while read -r l; do
      for kv in "$@"; do [[ $l == *"${kv%%=*}=\"${kv#*=}\""* ]] || continue 2; done
      echo "${l##* }"
    done
  } | awk '{ s += $1 } END { print s + 0 }'
}

# expect_counts PINGS ERRORS: waits until the agent counted them all, then asserts exact counts,
# no other service, no lost events, no restart.
expect_counts() {
  local pings=$1 errors=$2 total=$(($1 + $2)) metrics got_total got_ping got_error others lost restarts
  all_arrived() { (($(count) >= total)); }
  wait_until 60 "all $total requests counted" all_arrived
  metrics=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics")
  echo "$metrics" | grep "^$COUNT{"
  got_total=$(count)
  got_ping=$(count http_route=/ping http_request_method=GET http_response_status_code=200)
  got_error=$(count http_route=/error http_request_method=GET http_response_status_code=500)
  say "counted: total $got_total, GET /ping 200: $got_ping, GET /error 500: $got_error"
  [[ $got_ping == "$pings" ]] || fail "$COUNT for GET /ping 200 is $got_ping, expected $pings"
  [[ $got_error == "$errors" ]] || fail "$COUNT for GET /error 500 is $got_error, expected $errors"
  [[ $got_total == "$total" ]] || fail "$COUNT for testapp sums to $got_total, expected $total"
  others=$(echo "$metrics" | grep "^$COUNT{" | grep -vc 'service_name="testapp"')
  ((others == 0)) || fail "$others $COUNT series of other services (only testapp is selected)"
  lost=$(curl -sf "http://127.0.0.1:$METRICS_PORT/internal/metrics" |
    awk '/^beyla_ebpf_events_lost_total/ { s += $NF } END { print s + 0 }')
  [[ $lost == 0 ]] || fail "beyla_ebpf_events_lost_total is $lost"
  restarts=$(systemctl show -P NRestarts beyla.service)
  [[ $restarts == 0 ]] || fail "beyla.service restarted $restarts times"
  COUNTED="ping=$got_ping error=$got_error total=$got_total"
}

# 3. The unit as shipped, on the kernel's default perf_event_paranoid.
say "kernel.perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid)"
read -r -a want_caps <<<"$BEYLA_CAPS"
mapfile -t unit_amb < <(sed -n 's/^AmbientCapabilities=//p' /etc/systemd/system/beyla.service)
mapfile -t unit_bnd < <(sed -n 's/^CapabilityBoundingSet=//p' /etc/systemd/system/beyla.service)
[[ $(cap_mask "${unit_amb[@]}") == "$(cap_mask "${want_caps[@]}")" ]] ||
  fail "the unit's AmbientCapabilities (${unit_amb[*]}) are not hardening.json's ($BEYLA_CAPS)"
[[ $(cap_mask "${unit_bnd[@]}") == "$(cap_mask "${want_caps[@]}")" ]] ||
  fail "the unit's CapabilityBoundingSet (${unit_bnd[*]}) is not hardening.json's ($BEYLA_CAPS)"
start_beyla
check_privileges "${want_caps[@]}"
send /ping 200 "$PINGS"
send /error 500 "$ERRORS"
expect_counts "$PINGS" "$ERRORS"
journalctl -u beyla.service --no-pager | grep -q 'Agent running' || fail "no 'Agent running.' in the journal"
echo "---- systemd-analyze security beyla.service"
systemd-analyze security beyla.service --no-pager 2>&1 | tail -n 3
say "PASS: the unit as shipped ($COUNTED, uid $BEYLA_UID, capabilities $BEYLA_MASK)"
shipped="ping=$PINGS error=$ERRORS uid=$BEYLA_UID caps=$BEYLA_MASK"

# 4. The drop-in the unit's header documents for kernels with perf_event_paranoid <= 2, copied
# from the header as written: the base capabilities alone must do.
echo 2 >/proc/sys/kernel/perf_event_paranoid || fail "setting kernel.perf_event_paranoid=2"
mkdir -p /etc/systemd/system/beyla.service.d
sed -n '/drop it with a drop-in/,/^#   CapabilityBoundingSet=CAP/p' /etc/systemd/system/beyla.service |
  sed -n 's/^#   //p' >/etc/systemd/system/beyla.service.d/base-capabilities.conf
echo "---- beyla.service.d/base-capabilities.conf (from the unit's header)"
cat /etc/systemd/system/beyla.service.d/base-capabilities.conf
grep -q '^\[Service\]$' /etc/systemd/system/beyla.service.d/base-capabilities.conf ||
  fail "no drop-in found in the unit's header"
systemctl daemon-reload || fail "systemctl daemon-reload"
read -r -a base_caps <<<"$BEYLA_BASE_CAPS"
start_beyla
check_privileges "${base_caps[@]}"
send /ping 200 2
expect_counts 2 0
say "PASS: with the documented drop-in at perf_event_paranoid=2 ($COUNTED, capabilities $BEYLA_MASK)"

echo "---- journalctl -u beyla.service (last 10 lines)"
journalctl -u beyla.service --no-pager -o short-monotonic | tail -n 10
echo "SYSTEMD-TEST-RESULT pass $shipped dropin=$BEYLA_MASK"
