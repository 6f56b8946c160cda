#!/usr/bin/env bash
# Sets up the machine and runs every test: unit tests, then the root end-to-end tests that
# load real BPF programs into this kernel. This is the README's test command and what CI runs.
#   VM_MATRIX=full   run the root_* suite on every kernel of vm-tests/kernels.toml (5.10, 6.1,
#                    6.12) with every hook mode, instead of 6.1 with kprobes only (~30 min more),
#                    and the systemd unit test on each of them instead of 6.1 only
set -euo pipefail
cd "$(dirname "$0")/.."
# A run from a fresh clone gains nothing from incremental state (4 GB of it in a debug build).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the end-to-end tests load BPF programs and must run as root (sudo $0)" >&2
  exit 1
fi

# Each stage's wall time, printed at the end (also when a stage fails): where CI's time goes.
STAGES=()
stage_name="setup (packages, test apps)"
stage_start=$SECONDS
run_start=$SECONDS
stage() {
  STAGES+=("$(printf '%5ds  %s' $((SECONDS - stage_start)) "$stage_name")")
  stage_name="$1"
  stage_start=$SECONDS
  echo "== $1"
}
print_stages() {
  STAGES+=("$(printf '%5ds  %s' $((SECONDS - stage_start)) "$stage_name")")
  echo "== test.sh: time per stage (total $((SECONDS - run_start))s)"
  printf '%s\n' "${STAGES[@]}"
}
# A background job still running when a stage fails (the fuzzing beside the VM tests) stops too.
fuzz_pid=""
on_exit() {
  if [ -n "$fuzz_pid" ]; then
    kill -- "-$fuzz_pid" 2>/dev/null || true
  fi
  print_stages
}
trap on_exit EXIT

bash scripts/setup.sh
bash testapps/build.sh

stage "build"
# testapps/rust-db (the Rust app of root_databases, with its database clients) is built by
# testapps/build.sh alone, once: not again here, nor by the unit tests.
cargo build --workspace --exclude rust-db --all-targets

stage "Kubernetes manifests (schemas, offline)"
bash scripts/check-manifests.sh

stage "unit tests (no privileges needed)"
cargo test --workspace --exclude rust-db -- --skip root_

stage "Nix files and systemd unit (offline checks)"
bash scripts/check-nix.sh

stage "test apps smoke test (with the demo system's self-test)"
bash testapps/smoke.sh

stage "Go apps built with go1.23 (bookworm-backports): go-http smoke test, demo self-test"
bash testapps/build-go.sh 1.23
bash testapps/smoke.sh go1.23
bash testapps/demo/selftest.sh --go 1.23

stage "formatting"
cargo fmt --all --check

stage "root end-to-end tests (real kernel, real BPF)"
# One at a time: each starts its own agent and apps, and the machine has two cores.
cargo test -p beyla --test 'root_*' -- --test-threads=1

stage "the capture, end-to-end and conformance tests again with the syscall tracepoint family"
# auto picks the socket family on this kernel (6.3+); syscall tracepoints are what a kernel
# without kprobes and without the socket tracepoints (before 6.3) falls back to.
BEYLA_EBPF_HOOK_MODE=tracepoints cargo test -p beyla --test root_capture --test root_discovery --test root_e2e \
  --test root_conformance_nginx --test root_conformance_python --test root_conformance_servers --test root_databases \
  --test root_hostile \
  -- --test-threads=1
# The TLS probes' link to the capture family (ssl_claim, ssl_cipher_sent, rustls_claim): an
# OpenSSL socket BIO, memory BIOs, rustls blocking and async; the other root_tls tests exercise
# the probes, which no family changes.
BEYLA_EBPF_HOOK_MODE=tracepoints cargo test -p beyla --test root_tls -- --test-threads=1 \
  root_tls_openssl_nginx_and_python root_tls_memory_bios_node_and_asyncio root_tls_rustls_blocking \
  root_tls_rustls_tokio

stage "benchmark suite, smoke run (bench/run --smoke: a few seconds per app, no timing assertions)"
# Fails only if the suite breaks (an app, the agent or a load generator fails, or the agent
# counts no requests); the full run (docs/benchmarks.md) is bench/run.
bash bench/run --smoke

stage "the same tests in Debian kernels under QEMU (vm-tests), with the short fuzzing and soak beside them"
# QEMU emulates on one thread: the other core meanwhile runs the fuzzing (scripts/fuzz.sh
# --short: installs cargo-afl, builds the targets on one job, fuzzes each for 30 s), then a
# 5-minute soak of the debug agent (bench/soak.py: mixed load and process churn, exact counts,
# no fd, link or map growth; the hour-long run with a release build is scripts/reliability.sh).
# Their own process group, so that a failure here stops them too.
mkdir -p target
fuzz_log=target/fuzz-short.log
soak_log=target/soak-short.log
CARGO_BUILD_JOBS=1 setsid bash -c "bash scripts/fuzz.sh --short >$fuzz_log 2>&1 || exit 1
  python3 bench/soak.py --agent target/debug/beyla --minutes 5 --json target/soak-short.json >$soak_log 2>&1 || exit 2" &
fuzz_pid=$!
if [ "${VM_MATRIX:-}" = full ]; then
  HOOK_MODES="${HOOK_MODES:-auto tracepoints kprobes fentry}" bash vm-tests/run-matrix.sh
else
  # This host has no kprobes: prove the kprobe family on a kernel that has them. The Python
  # conformance servers (uvicorn with FastAPI, grpcio) take over 30 s just to import under
  # TCG: they run on the host in both families above, and in the full matrix.
  # root_conformance_servers (Tomcat's JVM, gunicorn, Apache, puma, Express) and
  # root_databases (initdb, mariadb-install-db, Python's database drivers) likewise run on the
  # host in both families, and in the full matrix.
  # The demo's go1.23 and stripped-binary variants test the Go binaries, not the capture
  # family: the host runs them (socket family), the full matrix in every guest. So do the
  # root_tls tests beyond those that link the TLS probes to the capture family.
  VM_TEST_SKIP="root_conformance_python root_conformance_servers root_databases" \
    VM_TEST_SKIP_TESTS=root_demo_go123,root_demo_stripped_binaries,root_tls_puma,root_tls_apache2_mod_ssl,root_tls_postgresql,root_tls_attach_mid_connection,root_tls_debian_node_shared_libssl \
    HOOK_MODES=kprobes \
    bash vm-tests/run-matrix.sh 6.1
fi

stage "fuzzing of the decoders and the 5-minute soak (started beside the VM tests; docs/fuzzing.md, docs/reliability.md)"
beside=0
wait "$fuzz_pid" || beside=$?
fuzz_pid=""
if [ "$beside" = 1 ]; then
  tail -n 40 "$fuzz_log"
  echo "test.sh: scripts/fuzz.sh --short failed (log: $fuzz_log)" >&2
  exit 1
fi
sed -n '/^== summary/,$p' "$fuzz_log"
if [ "$beside" != 0 ]; then
  cat "$soak_log"
  echo "test.sh: bench/soak.py failed (log: $soak_log)" >&2
  exit 1
fi
grep -v '^   ' "$soak_log" | head -n 40

stage "deploy/systemd/beyla.service under systemd in a Debian guest (vm-tests --systemd)"
# ~1 min on 6.1 once the Debian image is cached; its first build (debootstrap) adds ~40 s.
if [ "${VM_MATRIX:-}" = full ]; then
  bash vm-tests/run-systemd.sh 5.10 6.1 6.12
else
  bash vm-tests/run-systemd.sh 6.1
fi
