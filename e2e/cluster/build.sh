#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok) and helm from Go modules into a cache directory keyed by their versions, plus the data
# files up.sh and the e2e tests need (kwok's Stage objects, the ServiceMonitor CRD; KEDA's CRDs: keda-crds.sh).
#
#   e2e/cluster/build.sh              build unless the cache already holds everything
#   e2e/cluster/build.sh --print-dir  print the cache directory and exit
#
# The cache lives in ${VIF_CACHE_DIR:-$HOME/.cache/vif}/cluster-bin/<versions>/. A build goes to a
# temporary directory beside it and is renamed into place at the end, so an interrupted build never
# leaves a half-filled cache behind. From nothing it takes several minutes on 2 cores (README.md).
set -euo pipefail

K8S_VERSION=1.34.3
ETCD_VERSION=3.6.4
KWOK_VERSION=0.8.0
HELM_VERSION=4.3.1
PROMETHEUS_OPERATOR_VERSION=0.85.0

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${VIF_CACHE_DIR:-$HOME/.cache/vif}/cluster-bin
BIN_DIR=$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION

# Everything a complete cache holds; up.sh and the tests rely on these names.
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok helm)
DATA_FILES=(kwok-stages.yaml monitoring.coreos.com_servicemonitors.yaml)

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
	for f in "${DATA_FILES[@]}"; do [[ -s $dir/$f ]] || return 1; done
}

# kubectl drives the cluster in the tests; machines of this project's kind have Debian's package, but a bare
# one may not.
if ! command -v kubectl >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get update -qq && apt-get install -y -qq kubectl
	else
		echo "build.sh: kubectl is needed (Debian package kubectl)" >&2
		exit 1
	fi
fi

# KEDA's CRDs, cached apart (by KEDA's version), so pinning another one does not rebuild the binaries.
"$HERE/keda-crds.sh"

if complete "$BIN_DIR"; then
	echo "cluster binaries are cached in $BIN_DIR"
	exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build the cluster binaries" >&2; exit 1; }

mkdir -p "$CACHE_ROOT"
TMP_DIR=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
trap 'rm -rf "$TMP_DIR"' EXIT

# Static binaries, as the upstream releases are; no C toolchain needed.
export CGO_ENABLED=0
# The ldflags stamp the versions the upstream release builds carry: without them the API server
# reports v0.0.0-master in /version, which breaks clients that check the server version (helm's
# kubeVersion constraints, kubectl's skew warning).
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	K8S_LDFLAGS+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*}"
	K8S_LDFLAGS+=" -X $pkg.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION") -X $pkg.gitTreeState=clean"
done

start=$SECONDS
echo "building the cluster binaries into $BIN_DIR (several minutes from nothing)"

# kube-apiserver, kube-controller-manager and kube-scheduler: k8s.io/kubernetes refuses
# `go install pkg@version` (its go.mod replaces its staging modules with local paths), so they are
# built inside this directory's module, which pins the staging modules to their releases.
echo "  kube-apiserver, kube-controller-manager, kube-scheduler v$K8S_VERSION"
(cd "$HERE" && go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$TMP_DIR/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler)

# etcd: the version Kubernetes 1.34 itself is tested with, from the same module.
echo "  etcd v$ETCD_VERSION"
(cd "$HERE" && go build -trimpath -ldflags "-s -w" -o "$TMP_DIR/etcd" go.etcd.io/etcd/server/v3)

# kwok and helm need newer k8s.io libraries than Kubernetes 1.34 (kwok 0.8 requires 0.36), so they
# cannot share that module; their own go.mod files have no replaces, so `go install @version` works.
# Run from the temporary directory so no go.mod around applies.
echo "  kwok v$KWOK_VERSION"
(cd "$TMP_DIR" && GOBIN=$TMP_DIR go install -trimpath -ldflags "-s -w" \
	"sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION")
echo "  helm v$HELM_VERSION"
(cd "$TMP_DIR" && GOBIN=$TMP_DIR go install -trimpath \
	-ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=v$HELM_VERSION" \
	"helm.sh/helm/v4/cmd/helm@v$HELM_VERSION")

# Prints the directory the module cache holds a module version in (downloading it if needed).
module_dir() {
	(cd "$TMP_DIR" && go mod download -json "$1") |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# kwok refuses to start without Stage objects ("no stages found"); they ship in its module. The
# node stages make a node Ready and keep its heartbeat; the pod stages make pods Running/Ready,
# complete jobs' pods and finish deleting pods (the kubelet's part of a graceful delete).
echo "  kwok stages"
kwok_dir=$(module_dir "sigs.k8s.io/kwok@v$KWOK_VERSION")
[[ -d $kwok_dir ]] || { echo "build.sh: kwok module not found in the module cache" >&2; exit 1; }
for stage in "$kwok_dir"/kustomize/stage/node/fast/*.yaml \
	"$kwok_dir"/kustomize/stage/node/heartbeat-with-lease/*.yaml \
	"$kwok_dir"/kustomize/stage/pod/fast/*.yaml; do
	[[ $(basename "$stage") == kustomization.yaml ]] && continue
	echo "---"
	cat "$stage"
done >"$TMP_DIR/kwok-stages.yaml"
[[ $(grep -c '^kind: Stage$' "$TMP_DIR/kwok-stages.yaml") -ge 5 ]] ||
	{ echo "build.sh: expected 5 kwok Stage objects in $TMP_DIR/kwok-stages.yaml" >&2; exit 1; }

# The real ServiceMonitor CRD, which the tests apply to simulate an installed Prometheus Operator.
echo "  ServiceMonitor CRD (prometheus-operator v$PROMETHEUS_OPERATOR_VERSION)"
po_dir=$(module_dir "github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION")
cp "$po_dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$TMP_DIR/"

chmod -R u+w "$TMP_DIR" # files copied from the module cache are read-only
complete "$TMP_DIR" || { echo "build.sh: the build did not produce every file" >&2; exit 1; }
chmod 755 "$TMP_DIR"
if complete "$BIN_DIR"; then
	# Another build finished first; keep its cache (a running cluster may be using it).
	rm -rf "$TMP_DIR"
else
	# Replace an incomplete cache (e.g. a file deleted by hand) with the fresh build.
	rm -rf "$BIN_DIR"
	mv -T "$TMP_DIR" "$BIN_DIR"
fi
trap - EXIT
echo "built the cluster binaries in $((SECONDS - start)) s: $BIN_DIR"
