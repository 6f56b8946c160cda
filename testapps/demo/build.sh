#!/usr/bin/env bash
# Builds the demo system (loadgen, frontend, backend, worker) in GOPATH mode, offline:
# gRPC and protobuf come from Debian's golang-google-grpc-dev & co. in /usr/share/gocode, the
# Go code of proto/demo.proto is generated with Debian's protoc + protoc-gen-go(-grpc).
#   testapps/demo/build.sh                      # go on PATH (Debian go1.19) -> testapps/build/demo/
#   GO=/path/to/go OUT=dir testapps/demo/build.sh   # another toolchain      -> dir/
# (testapps/build-go.sh 1.23 does the latter with go1.23 from bookworm-backports.)
# Only rebuilds what changed. Packages: scripts/setup.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$(cd "$HERE/.." && pwd)/build"
GO="${GO:-go}"
OUT="${OUT:-$BUILD/demo}"
SYS_GOPATH=/usr/share/gocode

for tool in "$GO" protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "demo/build.sh: '$tool' not found (install the packages with scripts/setup.sh)" >&2
    exit 1
  }
done
[[ -d $SYS_GOPATH/src/google.golang.org/grpc ]] || {
  echo "demo/build.sh: $SYS_GOPATH/src/google.golang.org/grpc missing (apt-get install golang-google-grpc-dev; see scripts/setup.sh)" >&2
  exit 1
}

# Private GOPATH: src/beylademo/<pkg> links to our sources, src/beylademo/demopb is generated.
GP="$BUILD/demo-gopath"
mkdir -p "$GP/src/beylademo/demopb" "$OUT"
for pkg in common loadgen frontend backend worker; do
  ln -sfn "$HERE/$pkg" "$GP/src/beylademo/$pkg"
done
gen="$GP/src/beylademo/demopb"
if [[ ! -s $gen/demo.pb.go || ! -s $gen/demo_grpc.pb.go || $HERE/proto/demo.proto -nt $gen/demo.pb.go ]]; then
  echo "demo/build.sh: protoc proto/demo.proto -> $gen"
  tmp="$(mktemp -d)"
  protoc -I "$HERE/proto" --go_out="$tmp" --go-grpc_out="$tmp" "$HERE/proto/demo.proto"
  mv -f "$tmp"/beylademo/demopb/*.go "$gen/"
  rm -rf "$tmp"
fi

export GOPATH="$GP:$SYS_GOPATH" GO111MODULE=off GOFLAGS= GOPROXY=off GOTOOLCHAIN=local
gobin="$(command -v "$GO")"
inputs=("$gobin" "$gen"/*.go "$HERE"/common/*.go)
for app in loadgen frontend backend worker; do
  stale=0
  [[ -x $OUT/$app ]] || stale=1
  for f in "${inputs[@]}" "$HERE/$app"/*.go; do [[ $f -nt $OUT/$app ]] && stale=1; done
  if ((stale)); then
    echo "demo/build.sh: building $app ($("$GO" version | awk '{print $3}')) -> $OUT/$app"
    "$GO" build -o "$OUT/$app.tmp" "beylademo/$app"
    mv -f "$OUT/$app.tmp" "$OUT/$app"
  fi
done
