#!/usr/bin/env bash
# Fetches a newer Go toolchain (default: golang-1.23 from bookworm-backports) without touching
# the system's apt sources: a private apt config (sources list, lists, cache) under the cache
# dir, `apt-get download` of golang-<ver>-go and golang-<ver>-src, `dpkg-deb -x` into the cache.
# Prints the GOROOT's `go` binary path on stdout (all progress goes to stderr).
#   testapps/fetch-go.sh [1.23]        # -> ~/.cache/beyla-rs/go1.23/usr/lib/go-1.23/bin/go
# Env: BEYLA_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/beyla-rs), DEBIAN_MIRROR
# (default: the first deb.debian.org-style URI of the system's sources, else deb.debian.org).
set -euo pipefail

ver="${1:-1.23}"
cache="${BEYLA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/beyla-rs}"
root="$cache/go$ver"
goroot="$root/usr/lib/go-$ver"
if [[ -x $goroot/bin/go ]] && "$goroot/bin/go" version >/dev/null 2>&1; then
  echo "$goroot/bin/go"
  exit 0
fi

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -r $keyring ]] || { echo "fetch-go: $keyring missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

# The system's Debian mirror (read only): first URI of a sources entry that carries a bookworm suite.
mirror="${DEBIAN_MIRROR:-}"
if [[ -z $mirror ]]; then
  mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^deb[ \t]/ && / bookworm( |$)/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }
         /^URIs:/ { uri = $2 } /^Suites:/ && / bookworm( |$)/ && uri ~ /debian\/?$/ { print uri; exit }' || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"
mirror="${mirror%/}"

apt="$cache/apt-backports"
mkdir -p "$apt/empty.d" "$apt/lists/partial" "$apt/cache/archives/partial" "$root/debs"
printf '# Written by testapps/fetch-go.sh; the system sources are not used.\ndeb [signed-by=%s] %s bookworm-backports main\n' \
  "$keyring" "$mirror" >"$apt/sources.list"
opts=(
  "-oDir::Etc::sourcelist=$apt/sources.list" "-oDir::Etc::sourceparts=$apt/empty.d"
  -oDir::Etc::preferences=/dev/null "-oDir::Etc::preferencesparts=$apt/empty.d"
  "-oDir::State::Lists=$apt/lists" "-oDir::Cache=$apt/cache" -oDir::State::status=/dev/null
  -oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oAcquire::Languages=none
  -oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
  -oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
  -oAPT::Sandbox::User=root
)
echo "fetch-go: apt-get update (bookworm-backports from $mirror, private lists in $apt/lists)" >&2
apt-get "${opts[@]}" -q update >&2
for pkg in "golang-$ver-go" "golang-$ver-src"; do
  echo "fetch-go: apt-get download $pkg" >&2
  (cd "$root/debs" && rm -f "${pkg}"_*.deb && apt-get "${opts[@]}" -q download "$pkg" >&2)
  deb="$(ls "$root/debs/${pkg}"_*.deb)"
  dpkg-deb -x "$deb" "$root"
done
# The package's GOROOT links src/ etc. into /usr/share/go-<ver>; make absolute links relative.
while IFS= read -r link; do
  target="$(readlink "$link")"
  if [[ $target == /usr/* ]]; then
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$target")" "$link"
  fi
done < <(find "$root/usr/lib/go-$ver" -maxdepth 2 -type l)
"$goroot/bin/go" version >&2
echo "$goroot/bin/go"
