#!/usr/bin/env bash
# Installs PyPI packages into a folder with `pip install --target` and prints the interpreter
# to run them with (PYTHONPATH=DIR). No venv: venv's ensurepip step failed on a fresh CI
# machine, and pip --target needs nothing beyond pip itself.
#   py=$(scripts/py-install.sh .cache/foo foo==1.0) && PYTHONPATH=.cache/foo "$py" -m foo
# The interpreter printed is the real executable (sys.executable), never a launcher such as a
# pyenv shim: a shim runs as bash (with the script's arguments) and forks a dozen helpers
# before it execs Python, which a test that instruments "the process whose arguments match"
# would catch first.
set -euo pipefail
dir=$1
shift
want="$*"

real() { "$1" -c 'import sys; print(sys.executable)'; }

if [[ -f $dir/.installed && $(cat "$dir/.installed") == "$want" ]]; then
  real "$(cat "$dir/.python")"
  exit 0
fi

py=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null && "$cand" -m pip --version >/dev/null 2>&1; then
    py=$(real "$(command -v "$cand")")
    break
  fi
done
if [[ -z $py ]]; then
  echo "py-install.sh: no python3 with pip; run scripts/setup.sh (installs python3-pip)" >&2
  exit 1
fi

echo "py-install.sh: installing $want into $dir ($py)" >&2
rm -rf "$dir"
# --target also skips PEP 668's externally-managed check of Debian's python.
"$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
  --target "$dir" "$@" >&2
echo "$py" >"$dir/.python"
echo "$want" >"$dir/.installed"
echo "$py"
