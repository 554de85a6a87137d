#!/usr/bin/env bash
# Installs vif and its pinned environment into the Python given as $1 (a venv's python).
# The one install recipe: `make install` and both images of Dockerfile.runtime run it.
#   install.sh PYTHON              the CPU image: runtime/requirements/cpu.lock, then the project
#   install.sh PYTHON --editable   the checkout's venv: cpu.lock and dev.lock, the project editable
#   install.sh PYTHON --gpu        the GPU image: gpu.lock (vllm and its CUDA torch), then the project
set -euo pipefail
python=$1
mode=${2:-}
here=$(cd "$(dirname "$0")/../.." && pwd)
requirements=$here/runtime/requirements
case "$mode" in
  "") locks=(--requirement "$requirements/cpu.lock") ;;
  --editable) locks=(--requirement "$requirements/cpu.lock" --requirement "$requirements/dev.lock") ;;
  --gpu) locks=(--requirement "$requirements/gpu.lock") ;;
  *) echo "install.sh: unknown mode '$mode' (--editable or --gpu)" >&2; exit 2 ;;
esac
# Every lock pins each package with its files' hashes (runtime/scripts/lock.py): pip refuses any other file.
# -P: never import from the working directory (the checkout) while installing.
"$python" -P -m pip install --quiet --require-hashes --requirement "$requirements/bootstrap.lock"
# Every package is pinned, so dependency resolution is skipped (--no-deps): see cpu.lock's header for why.
"$python" -P -m pip install --no-deps --require-hashes "${locks[@]}"
if [ "$mode" = "--editable" ]; then
  "$python" -P -m pip install --no-deps --no-build-isolation --editable "$here"
else
  "$python" -P -m pip install --no-deps --no-build-isolation "$here"
fi
