#!/usr/bin/env bash
# Installs npm packages into a folder with `npm install --prefix` and prints that folder (its
# node_modules goes on NODE_PATH). Idempotent: nothing is fetched when the same packages are
# already there.
#   dir=$(scripts/npm-install.sh .cache/foo foo@1.0) && NODE_PATH=$dir/node_modules node app.js
set -euo pipefail
dir=$1
shift
want="$*"

if [[ -f $dir/.installed && $(cat "$dir/.installed") == "$want" ]]; then
  echo "$dir"
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "npm-install.sh: npm missing: install Node.js with npm (Debian: nodejs npm)" >&2
  exit 1
fi

echo "npm-install.sh: installing $want into $dir" >&2
rm -rf "$dir"
mkdir -p "$dir"
npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error "$@" >&2
echo "$want" >"$dir/.installed"
echo "$dir"
