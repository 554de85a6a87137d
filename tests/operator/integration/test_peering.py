"""Two operator replicas with kopf peering: the higher priority one works, the other waits, no fighting."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client, config

from .conftest import KUBECONFIG, OperatorProcess, apply_model, kubectl, model_manifest, wait_for


def test_lower_priority_replica_pauses(namespace: str, tmp_path: Path) -> None:
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "vif"}}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(peering))
    leader = OperatorProcess(namespace, tmp_path, ("--peering", "vif", "--priority", "100"))
    standby = OperatorProcess(namespace, tmp_path, ("--peering", "vif", "--priority", "50"))
    leader.start()
    standby.start()
    try:

        def priorities() -> list[int]:
            peering = yaml.safe_load(kubectl("get", "kopfpeering", "vif", "-n", namespace, "-o", "yaml").stdout)
            return sorted(peer["priority"] for peer in (peering.get("status") or {}).values())

        wait_for(lambda: priorities() == [50, 100], "both replicas in the peering object")
        apply_model(namespace, model_manifest("peered", {"model": {"path": "/models/m"}}))
        apps = client.AppsV1Api(config.new_client_from_config(str(KUBECONFIG)))
        selector = "inference.vif.dev/model=peered,app.kubernetes.io/name=vif-runtime"  # not its router's
        wait_for(lambda: apps.list_namespaced_deployment(namespace, label_selector=selector).items, "the Deployment")
        assert len(apps.list_namespaced_deployment(namespace, label_selector=selector).items) == 1
        # kopf starts paused until it has read the peering: only the leader ever resumes and handles models
        assert "Resuming operations" in leader.log_path().read_text()
        standby_log = standby.log_path().read_text()
        assert "Resuming operations" not in standby_log and "peered" not in standby_log
    finally:
        leader.kill()
        standby.kill()
