#!/usr/bin/env bash
# Fetches Debian's own Node.js (bookworm's nodejs and libnode, which use the system's shared
# libssl, unlike the official binaries with OpenSSL linked in) beside whatever node is
# installed: `apt-get download` of the Debian version and `dpkg-deb -x` into testapps/build/
# (so that the VM guests see it too), with a launcher that points the loader at its libnode.
# Its other dependencies are ordinary packages (scripts/setup.sh). Prints the launcher's path.
#   testapps/fetch-debian-node.sh     # -> testapps/build/debian-node/node
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/build/debian-node"
launcher="$root/node"
if [[ -x $launcher ]] && "$launcher" -e 0 >/dev/null 2>&1; then
  echo "$launcher"
  exit 0
fi

# Debian's builds are the +dfsg versions (another node, such as NodeSource's, may be installed).
ver="$(apt-cache madison nodejs | awk -F'|' '$2 ~ /dfsg/ { gsub(/ /, "", $2); print $2; exit }')"
[[ -n $ver ]] || { echo "fetch-debian-node: no Debian nodejs in the apt sources (apt-get update?)" >&2; exit 1; }
libnode="$(apt-cache depends "nodejs=$ver" | awk '/Depends: libnode/ { print $2; exit }')"
[[ -n $libnode ]] || { echo "fetch-debian-node: nodejs $ver depends on no libnode" >&2; exit 1; }

rm -rf "$root.tmp"
mkdir -p "$root.tmp/debs"
echo "fetch-debian-node: nodejs and $libnode $ver" >&2
(cd "$root.tmp/debs" && apt-get download -q "nodejs=$ver" "$libnode=$ver" >&2)
for deb in "$root.tmp"/debs/*.deb; do
  dpkg-deb -x "$deb" "$root.tmp"
done
rm -rf "$root.tmp/debs"
libdir="$(dirname "$(find "$root.tmp/usr/lib" -name 'libnode.so.*' | head -n 1)")"
libdir="$root/${libdir#"$root.tmp/"}"
printf '#!/bin/sh\n# Written by testapps/fetch-debian-node.sh: Debian'"'"'s node %s with its libnode.\nLD_LIBRARY_PATH=%q exec %q "$@"\n' \
  "$ver" "$libdir" "$root/usr/bin/node" >"$root.tmp/node"
chmod +x "$root.tmp/node"
rm -rf "$root" && mv "$root.tmp" "$root"
"$launcher" -e 0 || { echo "fetch-debian-node: $launcher does not run (scripts/setup.sh installs its dependencies)" >&2; exit 1; }
echo "$launcher"
