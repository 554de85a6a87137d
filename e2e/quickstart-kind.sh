#!/usr/bin/env bash
# make quickstart-kind: docs/quickstart.md, step by step, on a kind cluster: build the images, load them into kind,
# install the operator with their tags, serve the default model and ask it a question. Needs a Docker engine, kind,
# kubectl, helm and jq; these machines have no Docker engine, so it stops at that check here (the same steps run on
# the local plane in `make e2e`). tests/test_quickstart.py keeps the page's commands and these the same.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in docker kind kubectl helm jq curl; do
	command -v "$tool" >/dev/null || { echo "quickstart: $tool is needed" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "quickstart: no Docker engine answers" >&2; exit 1; }

# 1. A cluster
kind create cluster --name vif --wait 120s

# 2. The images, loaded into the cluster's node
make images
operator=$(jq -r .operator .cache/images/images.json)
runtime=$(jq -r .runtime .cache/images/images.json)
kind load docker-image --name vif "$operator" "$runtime"

# 3. The operator, with the tags just built
helm install vif charts/vif-operator -n vif-system --create-namespace \
  --set image.repository="${operator%:*}" --set image.tag="${operator##*:}" --set runtimeImage="$runtime" --wait

# 4. The default model
kubectl apply -f docs/examples/inferencemodels/cpu-smollm2.yaml
kubectl wait inferencemodel/smollm2 --for=condition=Ready --timeout=15m
kubectl get inferencemodel smollm2

# 5. A first answer
kubectl port-forward service/smollm2 8000:80 >/dev/null &
trap 'kill $!' EXIT
sleep 3
curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 20}'
