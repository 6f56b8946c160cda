#!/usr/bin/env bash
# Validates every YAML document under deploy/kubernetes/ against the Kubernetes API schemas,
# offline: kubernetes-validate (PyPI) ships the schemas of each Kubernetes release. It is
# installed into a venv under .cache/ on first use.
#   K8S_VERSION=1.33.0 scripts/check-manifests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

version="${K8S_VERSION:-1.33.0}"
venv=.cache/kubernetes-validate
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "check-manifests: installing kubernetes-validate into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi

mapfile -t files < <(find deploy/kubernetes -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "check-manifests: no manifests under deploy/kubernetes" >&2
  exit 1
fi
# --strict rejects fields the schema does not know (typos such as `hostPid`).
"$venv/bin/kubernetes-validate" --strict --kubernetes-version "$version" "${files[@]}"
echo "check-manifests: ${#files[@]} files valid against Kubernetes $version"
