#!/usr/bin/env bash
# Fetches KEDA's CRDs (ScaledObject, ScaledJob, TriggerAuthentication, ...) at a pinned version from its Go
# module, without building KEDA, into ${VIF_CACHE_DIR:-$HOME/.cache/vif}/keda-<version>/crds/. The cluster
# tests apply keda.sh_scaledobjects.yaml from there to stand for a cluster with KEDA installed (no KEDA runs:
# the ScaledObjects the operator makes are not acted on); autoscaling.sh applies them all when it runs KEDA
# itself (built apart, by build-autoscaling.sh). build.sh runs it.
#
#   e2e/cluster/keda-crds.sh              fetch unless the cache already holds them
#   e2e/cluster/keda-crds.sh --print-dir  print the CRDs' directory and exit
set -euo pipefail

KEDA_VERSION=2.21.0

CRD_DIR=${VIF_CACHE_DIR:-$HOME/.cache/vif}/keda-$KEDA_VERSION/crds

if [[ ${1:-} == --print-dir ]]; then
	echo "$CRD_DIR"
	exit 0
elif [[ $# -gt 0 ]]; then
	echo "usage: $0 [--print-dir]" >&2
	exit 2
fi

if [[ -s $CRD_DIR/keda.sh_scaledobjects.yaml ]]; then
	echo "KEDA's CRDs are cached in $CRD_DIR"
	exit 0
fi

command -v go >/dev/null || { echo "keda-crds.sh: Go is needed to fetch KEDA's module" >&2; exit 1; }

mkdir -p "$(dirname "$CRD_DIR")"
TMP_DIR=$(mktemp -d "$(dirname "$CRD_DIR")/.crds.XXXXXX")
trap 'rm -rf "$TMP_DIR"' EXIT

# Only the module's source is downloaded (into Go's module cache), nothing is built. Run from the temporary
# directory so that no go.mod around applies.
module_dir=$(cd "$TMP_DIR" && go mod download -json "github.com/kedacore/keda/v2@v$KEDA_VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $module_dir/config/crd/bases ]] || { echo "keda-crds.sh: KEDA's module has no config/crd/bases" >&2; exit 1; }
cp "$module_dir"/config/crd/bases/*.yaml "$TMP_DIR/"
chmod 644 "$TMP_DIR"/*.yaml # files copied from the module cache are read-only
chmod 755 "$TMP_DIR"
[[ -s $TMP_DIR/keda.sh_scaledobjects.yaml ]] || { echo "keda-crds.sh: no ScaledObject CRD in KEDA's module" >&2; exit 1; }
if [[ ! -s $CRD_DIR/keda.sh_scaledobjects.yaml ]]; then # else another run finished first
	rm -rf "$CRD_DIR"
	mv -T "$TMP_DIR" "$CRD_DIR"
fi
echo "fetched KEDA v$KEDA_VERSION's CRDs into $CRD_DIR"
