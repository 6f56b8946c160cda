#!/usr/bin/env bash
# Sets up the machine and runs every test: unit tests, then the root end-to-end tests that
# load real BPF programs into this kernel. This is the README's test command and what CI runs.
#   VM_MATRIX=full   run the root_* suite on every kernel of vm-tests/kernels.toml (5.10, 6.1,
#                    6.12) with every hook mode, instead of 6.1 with kprobes only (~30 min more),
#                    and the systemd unit test on each of them instead of 6.1 only
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the end-to-end tests load BPF programs and must run as root (sudo $0)" >&2
  exit 1
fi

bash scripts/setup.sh
bash testapps/build.sh

echo "== build"
cargo build --workspace --all-targets

echo "== Kubernetes manifests (schemas, offline)"
bash scripts/check-manifests.sh

echo "== unit tests (no privileges needed)"
cargo test --workspace -- --skip root_

echo "== Nix files and systemd unit (offline checks)"
bash scripts/check-nix.sh

echo "== test apps smoke test (with the demo system's self-test)"
bash testapps/smoke.sh

echo "== Go apps built with go1.23 (bookworm-backports): go-http smoke test, demo self-test"
bash testapps/build-go.sh 1.23
bash testapps/smoke.sh go1.23
bash testapps/demo/selftest.sh --go 1.23

echo "== formatting"
cargo fmt --all --check

echo "== root end-to-end tests (real kernel, real BPF)"
# One at a time: each starts its own agent and apps, and the machine has two cores.
cargo test -p beyla --test 'root_*' -- --test-threads=1

echo "== the capture and end-to-end tests again with the syscall tracepoint family"
# auto picks the socket family on this kernel (6.3+); syscall tracepoints are what a kernel
# without kprobes and without the socket tracepoints (before 6.3) falls back to.
BEYLA_EBPF_HOOK_MODE=tracepoints cargo test -p beyla --test root_capture --test root_discovery --test root_e2e -- --test-threads=1

echo "== benchmark suite, smoke run (bench/run --smoke: a few seconds per app, no timing assertions)"
# Fails only if the suite breaks (an app, the agent or a load generator fails, or the agent
# counts no requests); the full run (docs/benchmarks.md) is bench/run.
bash bench/run --smoke

echo "== the same tests in Debian kernels under QEMU (vm-tests)"
if [ "${VM_MATRIX:-}" = full ]; then
  HOOK_MODES="${HOOK_MODES:-auto tracepoints kprobes fentry}" bash vm-tests/run-matrix.sh
else
  # This host has no kprobes: prove the kprobe family on a kernel that has them.
  HOOK_MODES=kprobes bash vm-tests/run-matrix.sh 6.1
fi

echo "== deploy/systemd/beyla.service under systemd in a Debian guest (vm-tests --systemd)"
# ~1 min on 6.1 once the Debian image is cached; its first build (debootstrap) adds ~40 s.
if [ "${VM_MATRIX:-}" = full ]; then
  bash vm-tests/run-systemd.sh 5.10 6.1 6.12
else
  bash vm-tests/run-systemd.sh 6.1
fi
