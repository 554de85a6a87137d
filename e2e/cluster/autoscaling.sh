#!/usr/bin/env bash
# Runs the autoscaling stack beside the local control plane (up.sh): Prometheus, and KEDA's operator and
# metrics API server as local processes out of the cluster, the latter registered with the API server as
# external.metrics.k8s.io (the aggregation layer). A ScaledObject is then acted on for real: KEDA's
# operator queries Prometheus and makes an HPA, and the controller manager's HPA controller reads KEDA's
# metric through the API server.
#
#   e2e/cluster/autoscaling.sh up                build if needed (build-autoscaling.sh), start, wait until
#                                                the APIService is Available
#   e2e/cluster/autoscaling.sh down              stop it; delete the APIService, KEDA's CRDs and namespace
#   e2e/cluster/autoscaling.sh down --keep-logs  the same, but keep .cluster/autoscaling/logs/
#
# Prometheus scrapes every 2 s the targets listed in prometheus-targets/*.json, in Prometheus' file_sd format:
# a test adds a target by writing a file such as
#   [{"targets": ["127.0.0.1:PORT"], "labels": {"namespace": "ns", "service": "svc", "pod": "svc-0"}}]
# (the labels a Kubernetes scrape would give). Its URL is in prometheus-address, written once everything is
# ready. State, logs and PID files live in .cluster/autoscaling/ (under $VIF_CLUSTER_DIR if set). Like up.sh,
# `up` is idempotent, and on a failure prints the tail of the failing component's log, stops what it started
# and exits non-zero. e2e/cluster/down.sh stops these processes too.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLUSTER_DIR=${VIF_CLUSTER_DIR:-$REPO/.cluster}
KUBECONFIG_FILE=$CLUSTER_DIR/kubeconfig
STATE=$CLUSTER_DIR/autoscaling
LOGS=$STATE/logs
PIDS=$STATE/pids
CERTS=$STATE/certs
TARGETS=$STATE/prometheus-targets
ADDRESS_FILE=$STATE/prometheus-address
# Stopped in this order: the metrics API server first, Prometheus, which KEDA queries, last.
COMPONENTS=(keda-adapter keda-operator prometheus)
KEDA_NAMESPACE=keda
SERVICE=keda-operator-metrics-apiserver
APISERVICE=v1beta1.external.metrics.k8s.io
GRACE_SECONDS=10

usage() {
	echo "usage: $0 up | down [--keep-logs]" >&2
	exit 2
}

command -v kubectl >/dev/null || { echo "autoscaling.sh: kubectl is needed (Debian package kubectl)" >&2; exit 1; }

# --- helpers (as in up.sh and down.sh) -------------------------------------------------------

# True if $2 is a live process running component $1's binary (a reused PID is left alone; a zombie counts as
# stopped).
is_component() {
	local stat comm
	read -r stat comm < <(ps -p "$2" -o stat=,comm= 2>/dev/null) || return 1
	# comm is the executable's name, cut to 15 characters on Linux.
	[[ $stat != Z* && -n $comm && $1 == "${comm##*/}"* ]]
}

alive() {
	local pid
	pid=$(cat "$PIDS/$1.pid" 2>/dev/null) || return 1
	is_component "$1" "$pid"
}

kube() { kubectl --kubeconfig "$KUBECONFIG_FILE" --request-timeout=10s "$@"; }
# For commands that wait (their own --timeout bounds them).
kube_waiting() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

cluster_up() { [[ -s $KUBECONFIG_FILE && $(kube get --raw /readyz 2>/dev/null) == ok ]]; }

apiservice_available() {
	[[ $(kube get apiservice "$APISERVICE" -o 'jsonpath={.status.conditions[?(@.type=="Available")].status}') == True ]]
}

http_ok() { curl -fsS --max-time 2 -o /dev/null "$1"; }

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# KEDA's CRDs (scaledobjects.keda.sh, cloudeventsources.eventing.keda.sh, ...) in the cluster.
keda_crds() { kube get crd -o name | sed -n 's#^[^/]*/\(.*\.keda\.sh\)$#\1#p'; }

# --- down ------------------------------------------------------------------------------------

# Stops component $1 (pid $2): SIGTERM, then SIGKILL after $GRACE_SECONDS.
stop() {
	local name=$1 pid=$2 deadline
	echo "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + GRACE_SECONDS))
	while is_component "$name" "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
	if is_component "$name" "$pid"; then
		echo "$name did not stop within ${GRACE_SECONDS}s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		for _ in {1..25}; do is_component "$name" "$pid" || break; sleep 0.2; done
	fi
}

# Removes the finalizers of KEDA's objects (a ScaledObject's finalizer.keda.sh): with the operator gone nobody
# would, and they would hold up the deletion of the CRDs.
drop_finalizers() {
	local crd name namespace
	for crd in $(keda_crds); do
		kube get "$crd" -A -o 'jsonpath={range .items[?(@.metadata.finalizers)]}{.metadata.name}{" "}{.metadata.namespace}{"\n"}{end}' |
			while read -r name namespace; do
				kube patch "$crd" "$name" ${namespace:+-n "$namespace"} --type merge \
					-p '{"metadata":{"finalizers":null}}' >/dev/null
			done || true # an object deleted meanwhile
	done
}

down() {
	local keep_logs=$1 reachable=false name pid crds
	cluster_up && reachable=true
	# The APIService first: while it names a server that is gone, API discovery fails for every client (the
	# controller manager's garbage collector and namespace controller included).
	if $reachable; then kube delete apiservice "$APISERVICE" --ignore-not-found; fi
	for name in "${COMPONENTS[@]}"; do
		pid=$(cat "$PIDS/$name.pid" 2>/dev/null) || continue
		if is_component "$name" "$pid"; then stop "$name" "$pid"; fi
	done
	# KEDA's CRDs go, and its objects with them: the other cluster tests expect a cluster without KEDA.
	if $reachable; then
		drop_finalizers
		crds=$(keda_crds)
		if [[ -n $crds ]]; then
			# shellcheck disable=SC2086 # one CRD name per word
			kube_waiting delete crd $crds --ignore-not-found --wait=true --timeout=60s
		fi
		kube_waiting delete namespace "$KEDA_NAMESPACE" --ignore-not-found --wait=true --timeout=60s
	fi
	if [[ -d $STATE ]]; then
		if $keep_logs; then
			find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
		else
			rm -rf "$STATE"
		fi
	fi
	echo "the autoscaling stack is down"
}

case ${1:-} in
up) [[ $# -eq 1 ]] || usage ;;
down)
	case ${2:-} in
	"") down false ;;
	--keep-logs) down true ;;
	*) usage ;;
	esac
	exit 0
	;;
*) usage ;;
esac

# --- up: helpers -----------------------------------------------------------------------------

command -v openssl >/dev/null || { echo "autoscaling.sh: openssl is needed" >&2; exit 1; }
command -v curl >/dev/null || { echo "autoscaling.sh: curl is needed" >&2; exit 1; }

FAILED_COMPONENT=""
fail() {
	local component=$1
	shift
	echo "autoscaling.sh: FAILED: $*" >&2
	if [[ -n $component && -f $LOGS/$component.log ]]; then
		echo "---- last 40 lines of $LOGS/$component.log ----" >&2
		tail -n 40 "$LOGS/$component.log" >&2
		echo "----" >&2
	fi
	FAILED_COMPONENT=${component:-unknown}
	exit 1
}

# On any failure (including a failed command under set -e) stop everything started so far, but keep the logs.
on_exit() {
	local rc=$?
	if [[ $rc -ne 0 ]]; then
		if [[ -z $FAILED_COMPONENT ]]; then
			echo "autoscaling.sh: FAILED (exit $rc); logs are in $LOGS" >&2
		fi
		echo "autoscaling.sh: stopping what was started; logs kept in $LOGS" >&2
		down true >&2 || true
	fi
}

# Starts component $1 (binary $BIN_DIR/$1, arguments $2...) in the background, in its own session so it
# outlives this script, with its log and PID file under $STATE.
start() {
	local name=$1
	shift
	setsid "$BIN_DIR/$name" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
	local pid=$! stat deadline=$((SECONDS + 10))
	echo "$pid" >"$PIDS/$name.pid"
	# Between fork and exec the child still bears this script's name: wait for the exec (or the exit) first.
	until alive "$name"; do
		read -r stat < <(ps -p "$pid" -o stat= 2>/dev/null) || stat=Z
		[[ $stat != Z* ]] || fail "$name" "$name exited at once"
		((SECONDS < deadline)) || fail "$name" "$name did not start"
		sleep 0.05
	done
	echo "  started $name (pid $pid, log $LOGS/$name.log)"
}

# Waits up to $2 seconds for command $3... to succeed while component $1 (if not "") stays alive.
wait_for() {
	local name=$1 timeout=$2 deadline
	shift 2
	deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		[[ -z $name ]] || alive "$name" || fail "$name" "$name exited during startup"
		((SECONDS < deadline)) || fail "$name" "timed out after ${timeout}s waiting for: $*"
		sleep 0.5
	done
}

# Prints $1 distinct free TCP ports (free on every address: the metrics API server's own /metrics listens on
# all of them).
free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# This machine's first non-loopback IPv4 address. The API server must reach the metrics API server at an
# endpoint address, and endpoint addresses may not be loopback ones, so it listens there.
host_address() {
	local address
	address=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n 1) || true
	[[ -n $address ]] || address=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9.]+$' | grep -v '^127\.' | head -n 1) || true
	echo "$address"
}

healthy() {
	local c
	[[ -s $ADDRESS_FILE ]] || return 1
	for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
	http_ok "$(cat "$ADDRESS_FILE")/-/ready" && apiservice_available
}

# --- up --------------------------------------------------------------------------------------

cluster_up || { echo "autoscaling.sh: the local cluster is not up: start it with make cluster-up" >&2; exit 1; }
if healthy; then
	echo "the autoscaling stack is already up (state in $STATE); Prometheus at $(cat "$ADDRESS_FILE")"
	exit 0
fi
if [[ -e $STATE ]]; then
	echo "clearing the stale state of an autoscaling stack that is not up in $STATE"
	down false
fi
# The aggregation layer needs the API server's requestheader flags (up.sh); the API server publishes them here.
[[ -n $(kube get configmap extension-apiserver-authentication -n kube-system \
	-o 'jsonpath={.data.requestheader-client-ca-file}' 2>/dev/null) ]] || {
	echo "autoscaling.sh: the running API server has no aggregation layer (started by an older up.sh):" \
		"restart the cluster (make cluster-down cluster-up)" >&2
	exit 1
}
HOST_IP=$(host_address)
[[ -n $HOST_IP ]] || { echo "autoscaling.sh: this machine has no non-loopback IPv4 address" >&2; exit 1; }

"$HERE/build-autoscaling.sh" # returns at once when the cache is complete
BIN_DIR=$("$HERE/build-autoscaling.sh" --print-dir)
"$HERE/keda-crds.sh"
CRD_DIR=$("$HERE/keda-crds.sh" --print-dir)

started_at=$SECONDS
trap on_exit EXIT
umask 077 # keys are for this user only
mkdir -p "$LOGS" "$PIDS" "$CERTS" "$TARGETS" "$STATE/prometheus-data" "$STATE/scaler-ca"
read -r PROMETHEUS_PORT OPERATOR_METRICS_PORT OPERATOR_HEALTH_PORT GRPC_PORT ADAPTER_PORT ADAPTER_METRICS_PORT \
	< <(free_ports 6)

# --- certificates ----------------------------------------------------------------------------

# One CA and one certificate for both of KEDA's processes: the operator serves its gRPC metrics service with
# it and the metrics API server is its client (mutual TLS, both read ca.crt, tls.crt and tls.key from
# --cert-dir); the metrics API server also serves the API server with it, which checks the Service's DNS name.
echo "generating KEDA's certificates in $CERTS"
openssl_quiet() { openssl "$@" 2>"$LOGS/openssl.log" || fail openssl "openssl $1 failed"; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=vif-local-keda-ca" \
	-keyout "$CERTS/ca.key" -out "$CERTS/ca.crt"
cat >"$CERTS/tls.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,IP:$HOST_IP,DNS:localhost,DNS:$SERVICE.$KEDA_NAMESPACE.svc,DNS:$SERVICE.$KEDA_NAMESPACE.svc.cluster.local
EOF
openssl_quiet req -newkey rsa:2048 -nodes -subj "/CN=keda" -keyout "$CERTS/tls.key" -out "$CERTS/tls.csr"
openssl_quiet x509 -req -in "$CERTS/tls.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" -CAcreateserial \
	-days 3650 -extfile "$CERTS/tls.ext" -out "$CERTS/tls.crt"

# --- Prometheus ------------------------------------------------------------------------------

echo "starting the autoscaling stack (logs in $LOGS)"
cat >"$STATE/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  scrape_timeout: 1s
  evaluation_interval: 2s
scrape_configs:
  - job_name: targets
    file_sd_configs:
      - files: ["$TARGETS/*.json"]
        refresh_interval: 5s
EOF
start prometheus \
	--config.file "$STATE/prometheus.yml" \
	--storage.tsdb.path "$STATE/prometheus-data" \
	--storage.tsdb.retention.time 1d \
	--web.listen-address "127.0.0.1:$PROMETHEUS_PORT" \
	--log.level warn
wait_for prometheus 60 http_ok "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"

# --- KEDA ------------------------------------------------------------------------------------

kube apply --server-side -f "$CRD_DIR" >/dev/null || fail "" "could not apply KEDA's CRDs from $CRD_DIR"
crds_established() { kube wait --for=condition=Established -f "$CRD_DIR" --timeout=5s; }
wait_for "" 60 crds_established
kube create namespace "$KEDA_NAMESPACE" --dry-run=client -o yaml | kube apply -f - >/dev/null

# Out of the cluster, KEDA learns from the environment what a Pod would have: the namespaces to watch (all),
# its own namespace, and where its objects live. Each listener gets a free port: health and metrics on
# 127.0.0.1, the gRPC metrics service on 127.0.0.1, the metrics API server on this machine's address.
# Certificate rotation is off (the default): it needs the in-cluster Secret and Service of a Helm install.
# --ca-dir holds the CAs scalers trust beyond the system's: none (an empty folder instead of a Pod's /custom/ca).
export KUBECONFIG=$KUBECONFIG_FILE WATCH_NAMESPACE="" POD_NAMESPACE=$KEDA_NAMESPACE \
	KEDA_CLUSTER_OBJECT_NAMESPACE=$KEDA_NAMESPACE
start keda-operator \
	--metrics-bind-address "127.0.0.1:$OPERATOR_METRICS_PORT" \
	--health-probe-bind-address "127.0.0.1:$OPERATOR_HEALTH_PORT" \
	--metrics-service-bind-address "127.0.0.1:$GRPC_PORT" \
	--cert-dir "$CERTS" \
	--ca-dir "$STATE/scaler-ca" \
	--enable-cert-rotation=false \
	--leader-elect=false
wait_for keda-operator 60 http_ok "http://127.0.0.1:$OPERATOR_HEALTH_PORT/readyz"
wait_for keda-operator 60 tcp_open 127.0.0.1 "$GRPC_PORT"

# The metrics API server authenticates the API server's proxied requests (the front-proxy certificate and
# X-Remote-* headers) and authorizes their users through the API server (delegated authn/authz).
start keda-adapter \
	--bind-address "$HOST_IP" \
	--secure-port "$ADAPTER_PORT" \
	--cert-dir "$CERTS" \
	--tls-cert-file "$CERTS/tls.crt" \
	--tls-private-key-file "$CERTS/tls.key" \
	--lister-kubeconfig "$KUBECONFIG_FILE" \
	--authentication-kubeconfig "$KUBECONFIG_FILE" \
	--authorization-kubeconfig "$KUBECONFIG_FILE" \
	--metrics-service-address "127.0.0.1:$GRPC_PORT" \
	--port "$ADAPTER_METRICS_PORT"
wait_for keda-adapter 60 tcp_open "$HOST_IP" "$ADAPTER_PORT"

# A Service without a selector and an EndpointSlice of our own (not the EndpointSlice controller's) that
# point at the metrics API server; the API server routes to the endpoint (--enable-aggregator-routing).
kube apply -f - >/dev/null <<EOF || fail keda-adapter "could not register $APISERVICE"
apiVersion: v1
kind: Service
metadata:
  name: $SERVICE
  namespace: $KEDA_NAMESPACE
spec:
  ports:
    - {name: https, port: 443, targetPort: $ADAPTER_PORT, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $SERVICE-local
  namespace: $KEDA_NAMESPACE
  labels:
    kubernetes.io/service-name: $SERVICE
    endpointslice.kubernetes.io/managed-by: vif-autoscaling
addressType: IPv4
ports:
  - {name: https, port: $ADAPTER_PORT, protocol: TCP}
endpoints:
  - addresses: ["$HOST_IP"]
    conditions: {ready: true}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: $APISERVICE
spec:
  group: external.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {name: $SERVICE, namespace: $KEDA_NAMESPACE, port: 443}
  caBundle: $(base64 <"$CERTS/ca.crt" | tr -d '\n')
EOF
external_metrics_served() { kube get --raw /apis/external.metrics.k8s.io/v1beta1; }
wait_for keda-adapter 90 apiservice_available
wait_for keda-adapter 30 external_metrics_served
for c in "${COMPONENTS[@]}"; do alive "$c" || fail "$c" "$c exited during startup"; done

echo "http://127.0.0.1:$PROMETHEUS_PORT" >"$ADDRESS_FILE.tmp"
mv "$ADDRESS_FILE.tmp" "$ADDRESS_FILE"
trap - EXIT
echo "the autoscaling stack is up in $((SECONDS - started_at)) s:"
echo "  Prometheus            http://127.0.0.1:$PROMETHEUS_PORT, scraping every 2 s the targets in $TARGETS/*.json"
echo "  KEDA operator         gRPC metrics service on 127.0.0.1:$GRPC_PORT"
echo "  KEDA metrics API      https://$HOST_IP:$ADAPTER_PORT, APIService $APISERVICE Available"
echo "stop it with: e2e/cluster/autoscaling.sh down"
