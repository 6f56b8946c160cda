#!/usr/bin/env bash
# Runs INSIDE a vm-tests guest (started by run-matrix.sh): each test of each given libtest
# binary on its own, with --test-threads=1, printing one line per test for the host to parse:
#   VM-MATRIX-RESULT <binary> <test> <pass|fail|timeout|ignored> <seconds>
# Env: VM_TEST_FILTER (substring a test name must contain), VM_TEST_SKIP_TESTS (comma-separated
# test names not to run), VM_TEST_TIMEOUT (s per test, 900),
# VM_TEST_REPEAT (runs of each test, 1: for intermittent failures, one result line per run).
set -uo pipefail
per_test=${VM_TEST_TIMEOUT:-900}
filter=${VM_TEST_FILTER:-}
skip_tests=${VM_TEST_SKIP_TESTS:-}
repeat=${VM_TEST_REPEAT:-1}
log=$(mktemp)
failed=0
echo "guest: kernel $(uname -r), BEYLA_EBPF_HOOK_MODE=${BEYLA_EBPF_HOOK_MODE:-unset}"
for exe in "$@"; do
  bin=$(basename "$exe")
  bin=${bin%-*}
  if ! list=$("$exe" --list --format terse 2>&1); then
    echo "$list"
    echo "VM-MATRIX-RESULT $bin (list) fail 0"
    failed=1
    continue
  fi
  for t in $(printf '%s\n' "$list" | sed -n 's/: test$//p'); do
    [[ -n $filter && $t != *"$filter"* ]] && continue
    [[ ",$skip_tests," == *",$t,"* ]] && continue
    for run in $(seq "$repeat"); do
      echo "=== $bin $t (run $run of $repeat)"
      start=$(date +%s.%N)
      timeout -k 10 "$per_test" "$exe" --exact "$t" --test-threads=1 --color never 2>&1 | tee "$log"
      rc=${PIPESTATUS[0]}
      end=$(date +%s.%N)
      secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
      if [[ $rc == 124 || $rc == 137 ]]; then
        status=timeout
      elif [[ $rc != 0 ]]; then
        status=fail
      elif grep -q '0 passed; 0 failed; 1 ignored' "$log"; then
        status=ignored
      else
        status=pass
      fi
      [[ $status == fail || $status == timeout ]] && failed=1
      echo "VM-MATRIX-RESULT $bin $t $status $secs"
    done
  done
done
rm -f "$log"
exit $failed
