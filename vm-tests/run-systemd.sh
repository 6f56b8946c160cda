#!/usr/bin/env bash
# Proves deploy/systemd/beyla.service without Nix: boots a Debian bookworm image with systemd as
# PID 1 (vm-tests --systemd: debootstrap'd once and cached) on a Debian kernel under QEMU,
# installs the agent and the unit unchanged, and runs vm-tests/guest-systemd-test.sh there: the
# Go test service as its own systemd service, `systemctl start beyla`, the agent's user and
# capabilities against deploy/systemd/hardening.json, 7 GET /ping + 3 GET /error and their exact
# counts on /metrics; then the drop-in the unit documents for kernels with
# perf_event_paranoid <= 2 (the base capabilities only), 2 GET /ping and their count.
#
#   vm-tests/run-systemd.sh [kernel...]      default: 6.1; VM_MATRIX=full: 5.10 6.1 6.12
#
# Env:
#   VM_TIMEOUT=900                 seconds per boot
#   VM_CGROUP=unified|hybrid       hybrid boots systemd with systemd.unified_cgroup_hierarchy=0
#   VM_TESTS_CACHE, VM_TESTS_ACCEL  passed to vm-tests (cache dir; auto|kvm|tcg)
#   VM_SYSTEMD_OUT=target/vm-systemd  where each boot's console log goes (<kernel>.log)
# Needs root, and debootstrap + e2fsprogs besides vm-tests' packages (scripts/setup.sh). The
# first run builds the image: about 40-60 s of debootstrap from the system's Debian mirror.
# Exit status: 0 when the test passed on every kernel, 1 otherwise (with the guest's journal of
# beyla.service printed at the end).
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
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi

echo "== run-systemd: building the host side"
bash testapps/build.sh
cargo build -q -p beyla --bin beyla -p vm-tests
target_dir="$(cargo metadata --format-version 1 --no-deps | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
vm="$target_dir/debug/vm-tests"
agent="$target_dir/debug/beyla"
out="${VM_SYSTEMD_OUT:-$target_dir/vm-systemd}"
mkdir -p "$out"
# The capabilities the plain unit must grant (the base set plus plainUnitFeatures), and the base
# set alone (what the drop-in the unit documents leaves), from the one source of truth.
read -r caps base_caps < <("$PYTHON" -c '
import json, sys
spec = json.load(open(sys.argv[1]))
base = spec["service"]["AmbientCapabilities"]
plain = base + [c for f in spec.get("plainUnitFeatures", []) for c in spec["featureCapabilities"][f]]
print(",".join(plain), ",".join(base))' deploy/systemd/hardening.json)
caps=${caps//,/ }
base_caps=${base_caps//,/ }
echo "run-systemd: the plain unit's capabilities (deploy/systemd/hardening.json): $caps"

failed=()
for k in "${kernels[@]}"; do
  log="$out/$k.log"
  echo "== run-systemd: kernel $k (log: $log)"
  start=$SECONDS
  set +e
  "$vm" --systemd --kernel "$k" --timeout "${VM_TIMEOUT:-900}" --cgroup "${VM_CGROUP:-unified}" \
    --env "REPO=$REPO" --env "AGENT=$agent" --env "GO_APP=$REPO/testapps/build/go-http" \
    --env "BEYLA_CAPS=$caps" --env "BEYLA_BASE_CAPS=$base_caps" \
    -- bash "/host$HERE/guest-systemd-test.sh" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  result=$(grep -a -o 'SYSTEMD-TEST-RESULT .*' "$log" | tr -d '\r' | tail -n1 || true)
  echo "run-systemd: kernel $k: exit $rc in $((SECONDS - start)) s: ${result:-no result line}"
  if ((rc != 0)) || [[ $result != "SYSTEMD-TEST-RESULT pass"* ]]; then
    failed+=("$k")
    echo "run-systemd: kernel $k FAILED; the guest's journal of beyla.service:" >&2
    sed -n '/==== BEGIN guest journal ====/,/==== END guest journal ====/p' "$log" | sed 's/^\[guest\] //' >&2
  fi
done

if ((${#failed[@]} > 0)); then
  echo "run-systemd: FAILED on ${failed[*]}" >&2
  exit 1
fi
echo "run-systemd: passed on ${kernels[*]}"
