#!/usr/bin/env bash
# Validates every YAML document under deploy/kubernetes/ against the Kubernetes API schemas,
# offline: kubernetes-validate (PyPI) ships the schemas of each Kubernetes release. It is
# installed under .cache/ on first use (scripts/py-install.sh).
#   K8S_VERSION=1.33.0 scripts/check-manifests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

version="${K8S_VERSION:-1.33.0}"
dir=.cache/kubernetes-validate-1.37.0
py=$(bash scripts/py-install.sh "$dir" "kubernetes-validate==1.37.0")

mapfile -t files < <(find deploy/kubernetes -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "check-manifests: no manifests under deploy/kubernetes" >&2
  exit 1
fi
# --strict rejects fields the schema does not know (typos such as `hostPid`).
PYTHONPATH="$dir" "$py" -m kubernetes_validate --strict --kubernetes-version "$version" "${files[@]}"
echo "check-manifests: ${#files[@]} files valid against Kubernetes $version"
