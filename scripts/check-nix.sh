#!/usr/bin/env bash
# Offline checks of the Nix files (flake.nix, nix/, nixos-module/, vm-tests/nixos/). They need no
# nixpkgs and no network beyond Debian's and crates.io's package registries:
#   1. every .nix file parses          (nix-instantiate --parse, from Debian's nix-bin)
#   2. formatting                       (nixpkgs-fmt --check)
#   3. no dead code                     (deadnix --fail: unused let bindings and lambda arguments)
#   4. the JSON files Nix reads with builtins.fromJSON evaluate (nix-instantiate --eval, pure)
#   5. deploy/systemd/beyla.service is rendered from deploy/systemd/hardening.json and
#      systemd-analyze verify accepts it (when systemd-analyze is installed)
# Installs nix-bin (apt) and nixpkgs-fmt/deadnix (cargo install --locked, into ~/.cargo/bin)
# when missing; both are idempotent. Exits non-zero, naming what failed, on any failure.
# Building the flake (nix build, nix flake check, the NixOS VM tests) needs nixpkgs and
# therefore a machine with Nix and network access: see docs/nixos.md.
set -uo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v nix-instantiate >/dev/null 2>&1; then
  echo "check-nix.sh: installing nix-bin (apt)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get install -y -q nix-bin >/dev/null ||
    { "${SUDO[@]}" apt-get update -q >/dev/null && "${SUDO[@]}" apt-get install -y -q nix-bin >/dev/null; } ||
    { echo "check-nix.sh: FAILED to install nix-bin" >&2; exit 1; }
fi
for tool in nixpkgs-fmt deadnix; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check-nix.sh: installing $tool (cargo install --locked)"
    cargo install --locked --quiet "$tool" || { echo "check-nix.sh: FAILED to install $tool" >&2; exit 1; }
  fi
done

# Tracked and new (not ignored) .nix files.
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.nix' | sort -u)
if [ "${#files[@]}" -eq 0 ]; then
  echo "check-nix.sh: no .nix files found" >&2
  exit 1
fi

failed=()
# nix-instantiate wants a writable state directory even for --parse; keep it out of the way.
state="$(mktemp -d)"
trap 'rm -rf "$state"' EXIT
nixi() { NIX_STATE_DIR="$state/state" NIX_LOG_DIR="$state/log" NIX_STORE_DIR="$state/store" \
  HOME="$state" nix-instantiate "$@"; }

echo "== parse (nix-instantiate --parse), ${#files[@]} files"
for f in "${files[@]}"; do
  if ! out="$(nixi --parse "$f" 2>&1 >/dev/null)"; then
    echo "FAIL parse $f"; echo "$out" | sed 's/^/    /'
    failed+=("parse $f")
  fi
done

echo "== format (nixpkgs-fmt --check)"
if ! nixpkgs-fmt --check "${files[@]}"; then
  failed+=("nixpkgs-fmt (fix with: nixpkgs-fmt ${files[*]})")
fi

echo "== dead code (deadnix --fail)"
if ! deadnix --fail "${files[@]}"; then
  failed+=("deadnix")
fi

echo "== JSON read by Nix (builtins.fromJSON)"
for j in deploy/systemd/hardening.json nixos-module/example-settings.yml; do
  [ -e "$j" ] || { echo "FAIL missing $j"; failed+=("missing $j"); continue; }
  if ! out="$(nixi --eval --strict -E "builtins.fromJSON (builtins.readFile ./$j)" 2>&1 >/dev/null)"; then
    echo "FAIL fromJSON $j"; echo "$out" | sed 's/^/    /'
    failed+=("fromJSON $j")
  fi
done

echo "== plain systemd unit (deploy/systemd/render.sh --check, systemd-analyze verify)"
if ! bash deploy/systemd/render.sh --check; then
  failed+=("deploy/systemd/beyla.service is not rendered from hardening.json (run deploy/systemd/render.sh)")
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants an existing ExecStart binary: check a copy that starts /bin/true.
  mkdir -p "$state/unit"
  sed 's|^ExecStart=[^ ]*|ExecStart=/bin/true|' deploy/systemd/beyla.service >"$state/unit/beyla.service"
  if ! out="$(systemd-analyze verify --man=no "$state/unit/beyla.service" 2>&1)" || [ -n "$out" ]; then
    echo "FAIL systemd-analyze verify deploy/systemd/beyla.service"; echo "$out" | sed 's/^/    /'
    failed+=("systemd-analyze verify deploy/systemd/beyla.service")
  fi
else
  echo "   (systemd-analyze not installed: skipped)"
fi

if [ "${#failed[@]}" -ne 0 ]; then
  echo "check-nix.sh: ${#failed[@]} check(s) failed:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "check-nix.sh: all Nix checks passed (${#files[@]} files)"
