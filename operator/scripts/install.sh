#!/usr/bin/env bash
# Installs the operator (vif with only the operator's pinned dependencies) into the Python given as $1 (a venv's
# python). The one operator install recipe: Dockerfile.operator and `make operator-install-check` both run it.
#   install.sh PYTHON
# The runtime's dependencies (vLLM, torch, ...) are left out: `vif.operator` never imports `vif.runtime`.
set -euo pipefail
python=$1
here=$(cd "$(dirname "$0")/../.." && pwd)
# -P: never put the working directory on sys.path; run from the checkout, its `operator/` folder would shadow
# the standard library's `operator` module and break pip.
# Every lock pins each package with its files' hashes (runtime/scripts/lock.py): pip refuses any other file.
# pip and setuptools first, as runtime/scripts/install.sh does (setuptools builds the project's wheel).
"$python" -P -m pip install --quiet --require-hashes --requirement "$here/runtime/requirements/bootstrap.lock"
# Every package is pinned in the lock, so dependency resolution is skipped.
"$python" -P -m pip install --no-deps --require-hashes --requirement "$here/operator/requirements.lock"
"$python" -P -m pip install --no-deps --no-build-isolation "$here"
