"""The local plane itself (e2e/cluster/up.sh): what the tests beside this one rely on it for."""

from __future__ import annotations

import json

from helpers.cluster import get, kubectl, wait_for


def test_each_kwok_node_heartbeats_through_its_lease() -> None:
    """kwok renews each node's Lease as a kubelet does. Without a Lease, the node-lifecycle controller sees only the
    node's status heartbeat, which kwok writes every 600-610 s, past the plane's 600 s grace period: the node went
    NotReady for a moment every ten minutes, and every pod on it unready for good."""
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    names = [n["metadata"]["name"] for n in nodes if n["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node")]
    assert names, "no kwok node"
    for name in names:
        first = wait_for(lambda name=name: renewed_at(name), f"{name}'s Lease")
        wait_for(lambda name=name, first=first: renewed_at(name) != first, f"{name}'s Lease renewed")  # every 10 s


def renewed_at(node: str) -> str | None:
    lease = get("lease", node, "kube-node-lease")
    return lease and lease["spec"].get("renewTime")
