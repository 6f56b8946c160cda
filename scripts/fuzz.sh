#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input (fuzz/, docs/fuzzing.md) with AFL++ through cargo-afl, on
# the stable toolchain.
#
#   scripts/fuzz.sh --short                  CI: ~30 s per target
#   scripts/fuzz.sh --long [SECONDS] [T...]  SECONDS per target (default 3600), targets T (default all)
#   scripts/fuzz.sh --long SECONDS --resume T...
#                                            continue each target's last campaign (its queue, and
#                                            AFL's counts of executions and time) for SECONDS more
#
# Installs cargo-afl when missing, builds the targets, runs each from its seed corpus
# (fuzz/corpus/<target>/) for the duration and prints its executions and execs/s. A crash makes
# the script exit non-zero; the crashing inputs are copied to fuzz/crashes/<target>/ and their
# paths printed (reproduce with `fuzz/target/release/<target> < input`).
set -euo pipefail

CARGO_AFL_VERSION=0.18.2
TARGETS=(http1_parse http2_frames tracker traceparent config go_inspect procfs)

root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-}
case "$mode" in
--short)
    secs=30
    shift
    ;;
--long)
    shift
    secs=3600
    if [[ ${1:-} =~ ^[0-9]+$ ]]; then
        secs=$1
        shift
    fi
    ;;
*)
    echo "usage: $0 --short | --long [SECONDS] [--resume] [TARGET...]" >&2
    exit 2
    ;;
esac
resume=0
if [[ ${1:-} == --resume ]]; then
    resume=1
    shift
fi
if (($# > 0)); then
    TARGETS=("$@")
fi

if ! cargo afl --version 2>/dev/null | grep -q "cargo-afl $CARGO_AFL_VERSION"; then
    echo "== installing cargo-afl $CARGO_AFL_VERSION"
    cargo install --locked cargo-afl --version "$CARGO_AFL_VERSION"
fi
# cargo-afl builds AFL++ when installed; `config --build` builds it when missing and refuses
# (harmlessly) when it is there. Its LLVM plugins are optional: Rust code is instrumented by
# rustc's own sanitizer coverage.
cargo afl config --build >/dev/null 2>&1 || true

echo "== building the fuzz targets"
(cd "$root/fuzz" && cargo afl build --release --bins)

# go_inspect mutates a real Go executable: testapps/go-http (net/http, crypto/tls, the bundled
# HTTP/2) built with the go on PATH (scripts/setup.sh installs it), standard library only in
# GOPATH mode as testapps/build.sh does, with uncompressed DWARF so that mutations reach the
# DWARF reader rather than zlib.
if [[ " ${TARGETS[*]} " == *" go_inspect "* ]]; then
    go_base="$root/fuzz/target/go-base/go-http"
    go_src="$root/testapps/go-http/main.go"
    go=$(command -v go || true)
    if [[ -z $go ]]; then
        echo "go_inspect needs go on PATH to build its base executable (scripts/setup.sh)" >&2
        exit 1
    fi
    if [[ ! -x $go_base || $go_src -nt $go_base || $(readlink -f "$go") -nt $go_base ]]; then
        echo "== building the go_inspect base ($("$go" version | awk '{print $3}')) -> $go_base"
        mkdir -p "$(dirname "$go_base")"
        (cd "$(dirname "$go_src")" && GO111MODULE=off GOFLAGS= GOPROXY=off GOTOOLCHAIN=local \
            "$go" build -ldflags=-compressdwarf=false -o "$go_base" main.go)
    fi
    export BEYLA_FUZZ_GO_BASE="$go_base"
fi

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
export AFL_FAST_CAL=1 AFL_NO_STARTUP_CALIBRATION=1 AFL_NO_WARN_INSTABILITY=1

stat() { sed -n "s/^$1 *: *//p" "$2"; }

failed=0
summary=()
for t in "${TARGETS[@]}"; do
    out="$root/fuzz/target/afl/$t"
    input=(-i "$root/fuzz/corpus/$t")
    if ((resume)) && [[ -f $out/default/fuzzer_stats ]]; then
        # AFL++ resumes in place from the queue and carries execs_done and run_time over.
        input=(-i -)
        echo "== resuming $t for ${secs}s (from $(stat execs_done "$out/default/fuzzer_stats") executions)"
    else
        rm -rf "$out"
        mkdir -p "$out"
        echo "== fuzzing $t for ${secs}s"
    fi
    # An execution of go_inspect that walks the base's whole DWARF takes ~25 ms; AFL would
    # otherwise time out at 20 ms, set from its faster inputs.
    timeout=()
    if [[ $t == go_inspect ]]; then
        timeout=(-t 250)
    fi
    start=$(date +%s)
    if ! cargo afl fuzz -V "$secs" "${timeout[@]}" "${input[@]}" -o "$out" \
        -- "$root/fuzz/target/release/$t" >"$out/afl.log" 2>&1; then
        tail -n 30 "$out/afl.log" >&2
        echo "$t: afl-fuzz failed (log: $out/afl.log)" >&2
        failed=1
        continue
    fi
    wall=$(($(date +%s) - start))
    stats="$out/default/fuzzer_stats"
    execs=$(stat execs_done "$stats")
    run=$(stat run_time "$stats")
    rate=$(awk -v e="$execs" -v s="$run" 'BEGIN { printf "%.0f", (s > 0 ? e / s : 0) }')
    crashes=$(find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | sort)
    hangs=$(find "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
    ncrash=0
    if [[ -n $crashes ]]; then
        ncrash=$(wc -l <<<"$crashes")
        failed=1
        mkdir -p "$root/fuzz/crashes/$t"
        while read -r c; do
            dest="$root/fuzz/crashes/$t/$(basename "$c" | tr ':,' '_-')"
            cp "$c" "$dest"
            echo "$t: CRASH $c (copied to $dest)" >&2
        done <<<"$crashes"
    fi
    line=$(printf '%-13s %12s execs %8s execs/s %5ss fuzzing (%ss wall) %3s crashes %3s hangs corpus %s' \
        "$t" "$execs" "$rate" "$run" "$wall" "$ncrash" "$hangs" "$(stat corpus_count "$stats")")
    echo "$line"
    summary+=("$line")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if ((failed)); then
    echo "fuzzing found crashes or failed" >&2
    exit 1
fi
