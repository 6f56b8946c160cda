#!/usr/bin/env bash
# Runs the agent's root_* integration test binaries inside Debian kernels under QEMU and prints
# a table: kernel x hook mode x test -> pass/fail, accelerator, seconds.
#
#   vm-tests/run-matrix.sh [kernel...]       default: 6.1; VM_MATRIX=full: 5.10 6.1 6.12
#
# Env:
#   HOOK_MODES="auto tracepoints"  ebpf.hook_mode values, one boot each (BEYLA_EBPF_HOOK_MODE)
#   VM_TEST_BINARIES="root_capture root_e2e"  only these test binaries (default: every root_*)
#   VM_TEST_SKIP="root_conformance_python"    every root_* binary but these
#   VM_TEST_FILTER=e2e_python      only tests whose name contains this
#   VM_TEST_SKIP_TESTS=a,b         not the tests with these exact names (comma-separated)
#   VM_TEST_TIMEOUT=900            seconds per test inside the guest
#   VM_TEST_REPEAT=30              run each selected test this many times in the same boot
#                                  (intermittent failures; one result row per run)
#   VM_TIMEOUT=5400                seconds per boot (all tests of one kernel and hook mode)
#   VM_CGROUP=unified|hybrid       guest cgroup layout (hybrid: v1 controllers + cgroup2 on
#                                  /sys/fs/cgroup/unified, like the build machine)
#   VM_TESTS_CACHE, VM_TESTS_ACCEL  passed to vm-tests (cache dir; auto|kvm|tcg)
#   VM_MATRIX_OUT=target/vm-matrix  where the per-boot logs and results.tsv go
#   VM_MATRIX_TARGET_DIR=DIR       build the test binaries and the agent in this cargo target
#                                  dir, so other builds in target/ can't replace them mid-run
# Exit status: 0 when every test passed (or was ignored) on every kernel, 1 otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO"

if (($# > 0)); then
  kernels=("$@")
elif [[ ${VM_MATRIX:-} == full ]]; then
  kernels=(5.10 6.1 6.12)
else
  kernels=(6.1)
fi
read -r -a modes <<<"${HOOK_MODES:-auto}"
boot_timeout=${VM_TIMEOUT:-5400}
cgroup=${VM_CGROUP:-unified}
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi

if [[ -n ${VM_MATRIX_TARGET_DIR:-} ]]; then export CARGO_TARGET_DIR="$VM_MATRIX_TARGET_DIR"; fi
echo "== run-matrix: building the host side once"
bash testapps/build.sh
cargo build -q -p vm-tests
target_dir="$(cargo metadata --format-version 1 --no-deps | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
vm="$target_dir/debug/vm-tests"
out="${VM_MATRIX_OUT:-$target_dir/vm-matrix}"
mkdir -p "$out"

# The root_* integration test executables (their agent binary path is compiled in).
mapfile -t exes < <(cargo test -p beyla --no-run --message-format=json 2>/dev/null | "$PYTHON" -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target", {})
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in t.get("kind", []) \
            and t.get("name", "").startswith("root_"):
        print(m["executable"])
')
if [[ -n ${VM_TEST_BINARIES:-} ]]; then
  keep=()
  for e in "${exes[@]}"; do
    name=$(basename "$e"); name=${name%-*}
    for want in $VM_TEST_BINARIES; do [[ $name == "$want" ]] && keep+=("$e"); done
  done
  exes=("${keep[@]}")
fi
if [[ -n ${VM_TEST_SKIP:-} ]]; then
  keep=()
  for e in "${exes[@]}"; do
    name=$(basename "$e"); name=${name%-*}
    skip=0
    for not in $VM_TEST_SKIP; do [[ $name == "$not" ]] && skip=1; done
    ((skip)) || keep+=("$e")
  done
  exes=("${keep[@]}")
fi
if ((${#exes[@]} == 0)); then
  echo "run-matrix: no root_* test executables found (cargo test -p beyla --no-run failed?)" >&2
  exit 1
fi
printf 'run-matrix: test binary %s\n' "${exes[@]}"

results="$out/results.tsv"
printf 'kernel\thook_mode\taccel\tboot_s\tbinary\ttest\tresult\tseconds\n' >"$results"
for k in "${kernels[@]}"; do
  for mode in "${modes[@]}"; do
    log="$out/$k-$mode.log"
    echo "== run-matrix: kernel $k, hook mode $mode, cgroup $cgroup (log: $log)"
    set +e
    "$vm" --kernel "$k" --timeout "$boot_timeout" --cwd "$REPO/agent" --cgroup "$cgroup" \
      --env "BEYLA_EBPF_HOOK_MODE=$mode" --env "VM_TEST_TIMEOUT=${VM_TEST_TIMEOUT:-900}" \
      --env "VM_TEST_FILTER=${VM_TEST_FILTER:-}" --env "VM_TEST_SKIP_TESTS=${VM_TEST_SKIP_TESTS:-}" \
      --env "VM_TEST_REPEAT=${VM_TEST_REPEAT:-1}" \
      --env RUST_BACKTRACE=1 \
      -- bash "$HERE/guest-run-tests.sh" "${exes[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    summary=$(grep -a 'vm-tests: summary ' "$log" | tail -n1 || true)
    accel=$(sed -n 's/.* accel=\([^ ]*\).*/\1/p' <<<"$summary")
    boot=$(sed -n 's/.* boot_s=\([^ ]*\).*/\1/p' <<<"$summary")
    n=0
    while read -r _ bin t status secs; do
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$mode" "${accel:--}" "${boot:--}" "$bin" "$t" "$status" "$secs" >>"$results"
      n=$((n + 1))
    done < <(grep -a -o 'VM-MATRIX-RESULT .*' "$log" | tr -d '\r')
    if ((rc == 124 || rc == 125)); then
      why=$([[ $rc == 124 ]] && echo vm-timeout || echo vm-failed)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$mode" "${accel:--}" "${boot:--}" "(vm)" "(boot)" "$why" "-" >>"$results"
    elif ((n == 0)); then
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$mode" "${accel:--}" "${boot:--}" "(vm)" "(no results)" "fail" "-" >>"$results"
    fi
  done
done

echo
echo "== run-matrix results ($results)"
column -t -s $'\t' "$results" 2>/dev/null || cat "$results"
passed=$(awk -F'\t' 'NR > 1 && $7 == "pass"' "$results" | wc -l)
skipped=$(awk -F'\t' 'NR > 1 && $7 == "ignored"' "$results" | wc -l)
failed=$(awk -F'\t' 'NR > 1 && $7 != "pass" && $7 != "ignored"' "$results" | wc -l)
echo
echo "run-matrix: $passed passed, $failed failed, $skipped skipped"
((failed == 0))
