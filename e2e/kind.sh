#!/usr/bin/env bash
# make e2e-kind: the e2e suite on a kind cluster, with both images built and loaded. Needs a Docker engine
# and kind (go install sigs.k8s.io/kind@v0.30.0); CI has neither, so it runs `make e2e` on the local plane.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=${KIND_CLUSTER:-vif-e2e}
for tool in docker kind kubectl; do
	command -v "$tool" >/dev/null || { echo "e2e/kind.sh: $tool is needed" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "e2e/kind.sh: no Docker engine answers" >&2; exit 1; }

make cluster-build # helm, from the same cache as the local plane
kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
make images # with Docker here; tagged by the hash of their inputs, listed in .cache/images/images.json
images=$PWD/.cache/images/images.json
read -r operator runtime < <(python3 -c 'import json, sys; i = json.load(open(sys.argv[1])); print(i["operator"], i["runtime"])' "$images")
kind load docker-image --name "$cluster" "$runtime" "$operator"

kubeconfig=$(mktemp)
trap 'rm -f "$kubeconfig"' EXIT
kind get kubeconfig --name "$cluster" >"$kubeconfig"
E2E_MODE=kind VIF_IMAGES="$images" VIF_KUBECONFIG="$kubeconfig" KUBECONFIG="$kubeconfig" .venv/bin/pytest -q e2e
