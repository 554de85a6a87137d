#!/usr/bin/env bash
# Builds the autoscaling stack that autoscaling.sh runs beside the local control plane: KEDA's operator and
# its metrics API server (keda-operator, keda-adapter) and Prometheus, from Go modules into a cache
# directory keyed by their versions. build.sh does not run it: only the tests of the real autoscaling chain
# need these binaries.
#
#   e2e/cluster/build-autoscaling.sh              build unless the cache already holds everything
#   e2e/cluster/build-autoscaling.sh --print-dir  print the cache directory and exit
#
# The cache lives in ${VIF_CACHE_DIR:-$HOME/.cache/vif}/autoscaling-bin/<versions>/. A build goes to a
# temporary directory beside it and is renamed into place at the end, so an interrupted build never leaves
# a half-filled cache behind. From nothing it takes about 17 minutes on 2 cores (README.md).
set -euo pipefail

# KEDA's version is also pinned in keda/go.mod (checked below) and in keda-crds.sh (its CRDs).
KEDA_VERSION=2.21.0
# Prometheus 3.x.y is published as the Go module version v0.3xx.y.
PROMETHEUS_VERSION=3.16.0
PROMETHEUS_MODULE_VERSION=v0.316.0

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${VIF_CACHE_DIR:-$HOME/.cache/vif}/autoscaling-bin
BIN_DIR=$CACHE_ROOT/keda-$KEDA_VERSION-prometheus-$PROMETHEUS_VERSION

# Everything a complete cache holds; autoscaling.sh relies on these names.
BINARIES=(keda-operator keda-adapter prometheus)

if [[ ${1:-} == --print-dir ]]; then
	echo "$BIN_DIR"
	exit 0
elif [[ $# -gt 0 ]]; then
	echo "usage: $0 [--print-dir]" >&2
	exit 2
fi

complete() {
	local dir=$1 f
	for f in "${BINARIES[@]}"; do [[ -x $dir/$f ]] || return 1; done
}

if complete "$BIN_DIR"; then
	echo "autoscaling binaries are cached in $BIN_DIR"
	exit 0
fi

command -v go >/dev/null || { echo "build-autoscaling.sh: Go is needed to build KEDA and Prometheus" >&2; exit 1; }
grep -q "^require github.com/kedacore/keda/v2 v$KEDA_VERSION\$" "$HERE/keda/go.mod" ||
	{ echo "build-autoscaling.sh: keda/go.mod does not require KEDA v$KEDA_VERSION" >&2; exit 1; }

mkdir -p "$CACHE_ROOT"
TMP_DIR=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
trap 'rm -rf "$TMP_DIR"' EXIT

# Static binaries, as the upstream releases are; no C toolchain needed.
export CGO_ENABLED=0

start=$SECONDS
echo "building the autoscaling binaries into $BIN_DIR (about 17 minutes from nothing)"

# KEDA refuses `go install pkg@version` (its go.mod has a replace), so both commands are built inside
# keda/, a module of this project's own that requires KEDA and repeats the replace. The version stamp is
# the one KEDA's Makefile sets; it shows in the operator's first log lines.
echo "  keda-operator, keda-adapter v$KEDA_VERSION"
(cd "$HERE/keda" && go build -trimpath \
	-ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION" -o "$TMP_DIR/" \
	github.com/kedacore/keda/v2/cmd/operator github.com/kedacore/keda/v2/cmd/adapter)
mv "$TMP_DIR/operator" "$TMP_DIR/keda-operator"
mv "$TMP_DIR/adapter" "$TMP_DIR/keda-adapter"

# Prometheus' go.mod has no replace, so `go install @version` works; run from the temporary directory so no
# go.mod around applies. remove_all_sd leaves out every service discovery but file_sd and http_sd (its
# plugins/ build tags): the tests hand it targets in files, and the build is much shorter. Without the
# builtinassets tag the web UI is left out; the HTTP API is all the tests and KEDA use.
echo "  prometheus v$PROMETHEUS_VERSION"
(cd "$TMP_DIR" && GOBIN=$TMP_DIR go install -trimpath -tags remove_all_sd \
	-ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
	"github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION")

complete "$TMP_DIR" || { echo "build-autoscaling.sh: the build did not produce every file" >&2; exit 1; }
chmod 755 "$TMP_DIR"
if complete "$BIN_DIR"; then
	# Another build finished first; keep its cache (a running stack may be using it).
	rm -rf "$TMP_DIR"
else
	# Replace an incomplete cache (e.g. a file deleted by hand) with the fresh build.
	rm -rf "$BIN_DIR"
	mv -T "$TMP_DIR" "$BIN_DIR"
fi
trap - EXIT
echo "built the autoscaling binaries in $((SECONDS - start)) s: $BIN_DIR"
