#!/usr/bin/env bash
# Stops the local cluster that e2e/cluster/up.sh started (by its PID files: SIGTERM, then SIGKILL
# after a grace period), with the autoscaling stack of autoscaling.sh if it runs, and removes its
# state (etcd data, certificates, kubeconfig, logs), so the next start is clean. Idempotent:
# without a cluster it does nothing and exits 0.
#
#   e2e/cluster/down.sh              stop and remove everything in .cluster/
#   e2e/cluster/down.sh --keep-logs  stop and remove everything but .cluster/logs/ (up.sh uses
#                                    this after a failed start)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLUSTER_DIR=${VIF_CLUSTER_DIR:-$REPO/.cluster}
PIDS=$CLUSTER_DIR/pids
GRACE_SECONDS=10

keep_logs=false
case ${1:-} in
"") ;;
--keep-logs) keep_logs=true ;;
*)
	echo "usage: $0 [--keep-logs]" >&2
	exit 2
	;;
esac

# True if $2 is a live process running component $1's binary (a reused PID is left alone). An
# exited process that its parent has not reaped yet (a zombie) counts as stopped.
is_component() {
	local stat comm
	read -r stat comm < <(ps -p "$2" -o stat=,comm= 2>/dev/null) || return 1
	[[ $stat != Z* && -n $comm && $1 == "${comm##*/}"* ]]
}

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

# Stop in reverse start order, each before the next: the API server's clients first (the API
# server waits for their open watches before it exits), etcd last (the API server needs it until
# then). The autoscaling stack's processes are clients too; its objects go with etcd's data.
stopped=0
for name in keda-adapter keda-operator prometheus kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
	pidfile=$PIDS/$name.pid
	[[ -f $pidfile ]] || pidfile=$CLUSTER_DIR/autoscaling/pids/$name.pid
	pid=$(cat "$pidfile" 2>/dev/null) || continue
	if is_component "$name" "$pid"; then
		stop "$name" "$pid"
		stopped=$((stopped + 1))
	fi
done

if [[ -d $CLUSTER_DIR ]]; then
	if $keep_logs; then
		find "$CLUSTER_DIR" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
	else
		rm -rf "$CLUSTER_DIR"
	fi
fi
if ((stopped > 0)); then
	echo "the local cluster is down"
else
	echo "no local cluster was running"
fi
