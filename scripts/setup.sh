#!/usr/bin/env bash
# Installs every system package the build, the tests and the demo need. Idempotent:
# a package already present is not installed again, and apt-get update runs only when needed.
set -euo pipefail

PKGS=(
  clang llvm libelf-dev zlib1g-dev pkg-config make   # BPF C build + libbpf-sys
  bpftool                                            # regenerating vmlinux.h, debugging
  golang-go                                          # Go test apps (go1.19)
  golang-google-grpc-dev golang-google-protobuf-dev  # demo system: gRPC in GOPATH mode
  golang-github-golang-protobuf-1-5-dev              #   (grpc accepts 1-3 too; generated code needs 1-5)
  golang-golang-x-net-dev                            # testapps/go-h2c (x/net/http2 server)
  protobuf-compiler protoc-gen-go protoc-gen-go-grpc #   code generation from testapps/demo/proto
  debian-archive-keyring                             # testapps/fetch-go.sh (go1.23, bookworm-backports)
  default-jdk-headless                               # Java test app
  nodejs                                             # Node test app
  libuv1 libc-ares2 node-cjs-module-lexer node-acorn node-undici # testapps/fetch-debian-node.sh: Debian's node runs beside another
  python3                                            # Python test app
  python3-pip                                        # scripts/py-install.sh: PyPI tools (pip --target)
  wrk curl                                           # load and requests
  nginx                                              # root_conformance_nginx: a real server nobody here wrote
  nghttp2-client                                     #   h2load, its HTTP/2 load generator
  php-fpm                                            #   and PHP behind it over FastCGI
  apache2 apache2-utils tomcat10 puma                # root_conformance_servers: Apache httpd and ab, Tomcat, puma
  npm                                                # scripts/npm-install.sh: express for root_conformance_servers
  prometheus                                         # real Prometheus server for the e2e test
  redis-server redis-tools memcached                 # root_databases: real Redis and Memcached (and redis-cli)
  postgresql                                         #   and PostgreSQL (initdb, postgres, psql, pgbench)
  mariadb-server mariadb-client                      #   and MariaDB (mariadb-install-db, mariadbd, mariadb)
  libpostgresql-jdbc-java libmariadb-java libspymemcached-java # and databases/DbApp.java's Java clients
  golang-github-lib-pq-dev golang-github-go-sql-driver-mysql-dev golang-github-gomodule-redigo-dev golang-github-bradfitz-gomemcache-dev # and databases/db_app.go's Go clients (GOPATH)
  iproute2 procps
  qemu-system-x86 busybox-static cpio xz-utils kmod   # vm-tests: Debian kernels under QEMU
  debootstrap e2fsprogs                              # vm-tests --systemd: the Debian image
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node and the JDK may come from outside Debian on a developer machine; accept them when on PATH.
filtered=()
for p in "${missing[@]}"; do
  case "$p" in
    nodejs) command -v node >/dev/null || filtered+=("$p") ;;
    npm) command -v npm >/dev/null || filtered+=("$p") ;;
    default-jdk-headless) command -v javac >/dev/null || filtered+=("$p") ;;
    python3) command -v python3 >/dev/null || filtered+=("$p") ;;
    python3-pip) python3 -m pip --version &>/dev/null || filtered+=("$p") ;;
    *) filtered+=("$p") ;;
  esac
done

if [ ${#filtered[@]} -gt 0 ]; then
  echo "setup.sh: installing ${filtered[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${filtered[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup.sh: cargo not found; install Rust (rustup) first" >&2; exit 1; }
echo "setup.sh: system packages ready"
