#!/usr/bin/env bash
# Starts a local Kubernetes control plane without containers: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok, which simulates one node so that Pods get
# scheduled and become Running and Ready (nothing really runs in them). Everything listens on
# 127.0.0.1; state, logs and PID files live in .cluster/ at the top of the checkout (or in
# $VIF_CLUSTER_DIR). The kubeconfig .cluster/kubeconfig appears once the cluster is ready.
#
# Idempotent: if the cluster from .cluster/ is already up and healthy it says so and exits 0; stale
# state from a cluster that is no longer healthy is cleared first. On any failure it prints the
# tail of the failing component's log, stops what it started (keeping .cluster/logs/) and exits
# non-zero. e2e/cluster/down.sh stops it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLUSTER_DIR=${VIF_CLUSTER_DIR:-$REPO/.cluster}
PKI=$CLUSTER_DIR/pki
LOGS=$CLUSTER_DIR/logs
PIDS=$CLUSTER_DIR/pids
KUBECONFIG_OUT=$CLUSTER_DIR/kubeconfig
# The components' own kubeconfig; copied to $KUBECONFIG_OUT at the very end, so that file exists
# only while a cluster is ready.
ADMIN_KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
NODE_NAME=kwok-node-0
SERVICE_CIDR=10.96.0.0/16
# kwok's pod and node addresses: RFC 2544's benchmarking range, which no LAN or VPN uses, because the tests' stand-in
# kubelet routes it to this machine (tests/helpers/kubelet.py); a /15 holds the thousands of pods of the many-model
# tests.
POD_CIDR=198.18.0.1/15
NODE_IP=198.18.0.1

command -v kubectl >/dev/null || { echo "up.sh: kubectl is needed (Debian package kubectl)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "up.sh: openssl is needed" >&2; exit 1; }

# --- helpers ---------------------------------------------------------------------------------

# True if the PID file of component $1 names a live process running that component's binary
# (the name check guards against a reused PID; an exited, unreaped process does not count).
alive() {
	local pid stat comm
	pid=$(cat "$PIDS/$1.pid" 2>/dev/null) || return 1
	read -r stat comm < <(ps -p "$pid" -o stat=,comm= 2>/dev/null) || return 1
	# comm is the executable's name, cut to 15 characters on Linux.
	[[ $stat != Z* && -n $comm && $1 == "${comm##*/}"* ]]
}

kube() { kubectl --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=5s "$@"; }

# True if the API server named in kubeconfig $1 answers /readyz with ok.
readyz() { [[ $(kubectl --kubeconfig "$1" --request-timeout=5s get --raw /readyz 2>/dev/null) == ok ]]; }

healthy() {
	local c
	[[ -s $KUBECONFIG_OUT ]] || return 1
	for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
	readyz "$KUBECONFIG_OUT"
}

usage_hint() {
	echo "  export KUBECONFIG=$KUBECONFIG_OUT"
	echo "  kubectl get nodes"
	echo "stop it with: make cluster-down (e2e/cluster/down.sh)"
}

# Prints the preferred port if nothing listens on it, else a free ephemeral port.
pick_port() {
	python3 - "$1" <<'EOF'
import socket, sys
for port in (int(sys.argv[1]), 0):
    s = socket.socket()
    # Like Go's listeners: a port left in TIME_WAIT by the previous run counts as free.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        print(s.getsockname()[1])
        break
    except OSError:
        pass
    finally:
        s.close()
EOF
}

FAILED_COMPONENT=""
fail() {
	local component=$1
	shift
	echo "up.sh: FAILED: $*" >&2
	if [[ -n $component && -f $LOGS/$component.log ]]; then
		echo "---- last 40 lines of $LOGS/$component.log ----" >&2
		tail -n 40 "$LOGS/$component.log" >&2
		echo "----" >&2
	fi
	FAILED_COMPONENT=${component:-unknown}
	exit 1
}

# On any failure (including a failed command under set -e) stop everything started so far, but
# keep the logs for a look.
on_exit() {
	local rc=$?
	if [[ $rc -ne 0 ]]; then
		if [[ -z $FAILED_COMPONENT ]]; then
			echo "up.sh: FAILED (exit $rc); logs are in $LOGS" >&2
		fi
		echo "up.sh: stopping what was started; logs kept in $LOGS" >&2
		"$HERE/down.sh" --keep-logs >&2 || true
	fi
}

# Starts component $1 (binary $BIN_DIR/$1, arguments $2...) in the background, in its own session
# so it outlives this script and the terminal, with its log and PID file under $CLUSTER_DIR.
start() {
	local name=$1
	shift
	setsid "$BIN_DIR/$name" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
	local pid=$! stat deadline=$((SECONDS + 10))
	echo "$pid" >"$PIDS/$name.pid"
	# Between fork and exec the child still bears this script's name, and alive() would take it
	# for a dead component: wait for the exec (or the exit) first.
	until alive "$name"; do
		read -r stat < <(ps -p "$pid" -o stat= 2>/dev/null) || stat=Z
		[[ $stat != Z* ]] || fail "$name" "$name exited at once"
		((SECONDS < deadline)) || fail "$name" "$name did not start"
		sleep 0.05
	done
	echo "  started $name (pid $pid, log $LOGS/$name.log)"
}

# Waits up to $2 seconds for command $3... to succeed while component $1 stays alive.
wait_for() {
	local name=$1 timeout=$2 deadline
	shift 2
	deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		alive "$name" || fail "$name" "$name exited during startup"
		((SECONDS < deadline)) || fail "$name" "timed out after ${timeout}s waiting for: $*"
		sleep 0.5
	done
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- already up? -----------------------------------------------------------------------------

if healthy; then
	echo "the local cluster is already up and healthy (state in $CLUSTER_DIR)"
	usage_hint
	exit 0
fi
if [[ -e $CLUSTER_DIR ]]; then
	echo "clearing stale state of a cluster that is not up in $CLUSTER_DIR"
	"$HERE/down.sh"
fi

# --- binaries --------------------------------------------------------------------------------

"$HERE/build.sh" # returns at once when the cache is complete
BIN_DIR=$("$HERE/build.sh" --print-dir)

started_at=$SECONDS
trap on_exit EXIT
umask 077 # keys, tokens and kubeconfigs are for this user only
mkdir -p "$PKI" "$LOGS" "$PIDS" "$CLUSTER_DIR/etcd"

ETCD_PORT=$(pick_port 2379)
ETCD_PEER_PORT=$(pick_port 2380)
APISERVER_PORT=$(pick_port 6443)
KCM_PORT=$(pick_port 10257)
SCHEDULER_PORT=$(pick_port 10259)
# Two picks of "any free port" can return the same one; the fixed preferences cannot collide.
[[ $(printf '%s\n' "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" "$SCHEDULER_PORT" | sort -u | wc -l) -eq 5 ]] ||
	fail "" "could not pick five distinct free ports; try again"

# --- certificates and credentials ------------------------------------------------------------

echo "generating certificates in $PKI"
openssl_quiet() { openssl "$@" 2>"$LOGS/openssl.log" || fail openssl "openssl $1 failed"; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=vif-local-ca" \
	-keyout "$PKI/ca.key" -out "$PKI/ca.crt"
# Serving certificate of the API server: reached as 127.0.0.1/localhost from this machine, and
# under its in-cluster names by Pods that use the default service account's kubeconfig.
cat >"$PKI/apiserver.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
openssl_quiet req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
	-keyout "$PKI/apiserver.key" -out "$PKI/apiserver.csr"
openssl_quiet x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
	-CAcreateserial -days 3650 -extfile "$PKI/apiserver.ext" -out "$PKI/apiserver.crt"
# Key pair that signs and verifies service-account tokens.
openssl_quiet genrsa -out "$PKI/sa.key" 2048
openssl_quiet rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
# The aggregation layer, for extension API servers such as KEDA's metrics API server (autoscaling.sh): the API
# server proxies requests to them with this client certificate, from a CA of its own, and names the user in
# X-Remote-* headers, which they trust only from that certificate.
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=vif-local-front-proxy-ca" \
	-keyout "$PKI/front-proxy-ca.key" -out "$PKI/front-proxy-ca.crt"
cat >"$PKI/front-proxy-client.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
openssl_quiet req -newkey rsa:2048 -nodes -subj "/CN=front-proxy-client" \
	-keyout "$PKI/front-proxy-client.key" -out "$PKI/front-proxy-client.csr"
openssl_quiet x509 -req -in "$PKI/front-proxy-client.csr" -CA "$PKI/front-proxy-ca.crt" \
	-CAkey "$PKI/front-proxy-ca.key" -CAcreateserial -days 3650 -extfile "$PKI/front-proxy-client.ext" \
	-out "$PKI/front-proxy-client.crt"

# One static admin token in group system:masters (all rights); RBAC governs everyone else.
ADMIN_TOKEN=$(openssl rand -hex 32)
echo "$ADMIN_TOKEN,vif-admin,vif-admin,\"system:masters\"" >"$PKI/tokens.csv"

cat >"$ADMIN_KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vif-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 <"$PKI/ca.crt" | tr -d '\n')
users:
- name: vif-admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: vif-local
  context:
    cluster: vif-local
    user: vif-admin
    namespace: default
current-context: vif-local
EOF

# --- etcd and the API server -----------------------------------------------------------------

echo "starting the control plane (logs in $LOGS)"
start etcd \
	--name vif-local \
	--data-dir "$CLUSTER_DIR/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "vif-local=http://127.0.0.1:$ETCD_PEER_PORT" \
	--log-level warn
wait_for etcd 30 tcp_open "$ETCD_PORT"

# The requestheader and proxy-client flags enable the aggregation layer (above); no kube-proxy routes Service
# IPs here, so the API server reaches an extension API server at its Service's endpoint address instead.
start kube-apiserver \
	--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 127.0.0.1 \
	--advertise-address 127.0.0.1 \
	--secure-port "$APISERVER_PORT" \
	--cert-dir "$PKI" \
	--tls-cert-file "$PKI/apiserver.crt" \
	--tls-private-key-file "$PKI/apiserver.key" \
	--client-ca-file "$PKI/ca.crt" \
	--token-auth-file "$PKI/tokens.csv" \
	--authorization-mode RBAC \
	--service-account-issuer https://kubernetes.default.svc \
	--service-account-key-file "$PKI/sa.pub" \
	--service-account-signing-key-file "$PKI/sa.key" \
	--service-cluster-ip-range "$SERVICE_CIDR" \
	--allow-privileged=true \
	--requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
	--requestheader-allowed-names front-proxy-client \
	--requestheader-username-headers X-Remote-User \
	--requestheader-group-headers X-Remote-Group \
	--requestheader-extra-headers-prefix X-Remote-Extra- \
	--proxy-client-cert-file "$PKI/front-proxy-client.crt" \
	--proxy-client-key-file "$PKI/front-proxy-client.key" \
	--enable-aggregator-routing=true
wait_for kube-apiserver 60 readyz "$ADMIN_KUBECONFIG"
echo "  kube-apiserver is ready on https://127.0.0.1:$APISERVER_PORT ($((SECONDS - started_at)) s)"

# --- controller manager, scheduler, kwok -----------------------------------------------------

# The node-lifecycle controller stays on: it lifts the node.kubernetes.io/not-ready taint once kwok
# reports the node Ready (without it Pods stay Pending). nodeipam and cloud-node-lifecycle need
# a pod network / cloud provider that do not exist here. A long node-monitor grace period: while a test
# runs the vLLM engine on both cores, kwok's lease renewals can come late, and a node flapping NotReady
# turns every pod on it unready for good (kwok re-readies only Pending pods). Client rates well above
# the defaults (20 QPS): one machine runs everything here, and `make bench-operator` creates a thousand
# Deployments at once. HPAs sync every 5 s (instead of 15 s) so that tests of the real autoscaling
# chain (autoscaling.sh) see scaling soon.
start kube-controller-manager \
	--kubeconfig "$ADMIN_KUBECONFIG" \
	--authentication-kubeconfig "$ADMIN_KUBECONFIG" \
	--authorization-kubeconfig "$ADMIN_KUBECONFIG" \
	--leader-elect=false \
	--bind-address 127.0.0.1 \
	--secure-port "$KCM_PORT" \
	--cert-dir "$PKI/kube-controller-manager" \
	--service-account-private-key-file "$PKI/sa.key" \
	--root-ca-file "$PKI/ca.crt" \
	--cluster-signing-cert-file "$PKI/ca.crt" \
	--cluster-signing-key-file "$PKI/ca.key" \
	--use-service-account-credentials \
	--service-cluster-ip-range "$SERVICE_CIDR" \
	--node-monitor-grace-period 10m \
	--kube-api-qps 300 --kube-api-burst 600 \
	--concurrent-deployment-syncs 20 --concurrent-replicaset-syncs 20 \
	--horizontal-pod-autoscaler-sync-period 5s \
	--controllers '*,-nodeipam,-cloud-node-lifecycle'

start kube-scheduler \
	--kubeconfig "$ADMIN_KUBECONFIG" \
	--authentication-kubeconfig "$ADMIN_KUBECONFIG" \
	--authorization-kubeconfig "$ADMIN_KUBECONFIG" \
	--leader-elect=false \
	--bind-address 127.0.0.1 \
	--secure-port "$SCHEDULER_PORT" \
	--cert-dir "$PKI/kube-scheduler" \
	--kube-api-qps 300 --kube-api-burst 600

# kwok manages only Nodes annotated kwok.x-k8s.io/node=fake, with the Stage objects build.sh
# collected. HOME is pointed into $CLUSTER_DIR because kwok would also load ~/.kwok/kwok.yaml.
# The node's heartbeat is its Lease, renewed every 10 s as a kubelet's: without the flag kwok keeps no
# Lease, and its status heartbeat (every 600-610 s) comes just after the 600 s grace period ends, so
# the node went NotReady for a moment every ten minutes.
mkdir -p "$CLUSTER_DIR/kwok-home"
HOME=$CLUSTER_DIR/kwok-home start kwok \
	--kubeconfig "$ADMIN_KUBECONFIG" \
	--config "$BIN_DIR/kwok-stages.yaml" \
	--manage-all-nodes=false \
	--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
	--cidr="$POD_CIDR" \
	--node-ip="$NODE_IP" \
	--node-lease-duration-seconds=40

# --- the simulated node ----------------------------------------------------------------------

# Status is accepted on create for Nodes; kwok then fills in conditions, addresses and heartbeats.
kube apply -f - >/dev/null <<EOF || fail kube-apiserver "could not create node $NODE_NAME"
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $NODE_NAME
    type: kwok
status:
  capacity: {cpu: "32", memory: 256Gi, pods: "5000", nvidia.com/gpu: "8"}
  allocatable: {cpu: "32", memory: 256Gi, pods: "5000", nvidia.com/gpu: "8"}
EOF

node_ready() {
	[[ $(kube get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
node_schedulable() {
	# The node-lifecycle controller removes the not-ready taint a few seconds after Ready.
	local taints
	taints=$(kube get node "$NODE_NAME" -o 'jsonpath={.spec.taints[*].key}') || return 1
	[[ $taints != *node.kubernetes.io/not-ready* ]]
}
default_sa() { kube get serviceaccount default -n default; }

wait_for kwok 60 node_ready
wait_for kube-controller-manager 60 node_schedulable
wait_for kube-controller-manager 60 default_sa
for c in "${COMPONENTS[@]}"; do alive "$c" || fail "$c" "$c exited during startup"; done

cp "$ADMIN_KUBECONFIG" "$KUBECONFIG_OUT.tmp"
mv "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
trap - EXIT
echo "the local cluster is up in $((SECONDS - started_at)) s: node $NODE_NAME is Ready. To use it:"
usage_hint
