#!/usr/bin/env bash
# Sets up the machine and runs every test: unit tests, then the root end-to-end tests that
# load real BPF programs into this kernel. This is the README's test command and what CI runs.
#   VM_MATRIX=full  (reserved for the kernel-matrix suite; not part of this run yet)
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

echo "== test apps smoke test"
bash testapps/smoke.sh

echo "== root end-to-end tests (real kernel, real BPF)"
# One at a time: each starts its own agent and apps, and the machine has two cores.
cargo test -p beyla --test 'root_*' -- --test-threads=1
