"""KEDA's ScaledObject instead of the HPA where its CRD is installed, and back when it goes; scale to zero without
KEDA is served at spec.replicas, Degraded. No KEDA runs here: its CRD alone decides what the operator makes.

The CRD is installed only inside the test and removed before and after it: other tests expect HPAs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.cluster import cached_keda_crd, wait_established

from .conftest import OperatorProcess, apply_model, condition, get, kubectl, model_manifest, model_with, wait_for

CRD = "scaledobjects.keda.sh"
PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}
IDLE = {**SPEC, "routing": {"strategy": "least-load"}, "autoscaling": {"minReplicas": 0, "maxReplicas": 2}}
BUSY = {**SPEC, "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "target": 4}}


def uninstall_keda() -> None:
    kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait=true")


@pytest.fixture
def keda_operator(namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """An operator that knows a Prometheus, in a cluster without KEDA's CRD (before and after the test)."""
    uninstall_keda()
    op = OperatorProcess(namespace, tmp_path, ("--prometheus-address", PROMETHEUS))
    op.start()
    yield op
    op.kill()
    uninstall_keda()


def degraded_reason(name: str, namespace: str, status: str) -> str | None:
    found = condition(model_with(name, namespace, "Degraded", status), "Degraded")
    return found["reason"] if found else None


def replicas_managers(name: str, namespace: str) -> set[str]:
    """The field managers that own the Deployment's spec.replicas."""
    args = ("get", "deployment", name, "-n", namespace, "-o", "json", "--show-managed-fields")
    deployment = json.loads(kubectl(*args).stdout)
    return {
        entry["manager"]
        for entry in deployment["metadata"]["managedFields"]
        if "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {})
    }


def test_the_scaled_object_follows_kedas_crd(namespace: str, keda_operator: OperatorProcess) -> None:
    apply_model(namespace, model_manifest("idle", IDLE))
    apply_model(namespace, model_manifest("busy", BUSY))
    assert wait_for(lambda: degraded_reason("idle", namespace, "True"), "idle Degraded") == "KEDARequired"
    assert get("deployment", "idle", namespace)["spec"]["replicas"] == 1  # served at spec.replicas meanwhile
    hpa = wait_for(lambda: get("hpa", "busy", namespace), "the HPA of busy")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vif_requests_in_flight"
    assert get("hpa", "idle", namespace) is None

    # KEDA's CRD appears: both models converge again, with no change of their own
    kubectl("apply", "--server-side", "-f", str(cached_keda_crd("keda.sh_scaledobjects.yaml")))
    wait_established(CRD)
    idle = wait_for(lambda: get("scaledobject", "idle", namespace), "the ScaledObject of idle")
    assert (idle["spec"]["minReplicaCount"], idle["spec"]["maxReplicaCount"]) == (0, 2)
    queue, pending = idle["spec"]["triggers"]
    assert queue["metadata"]["serverAddress"] == PROMETHEUS
    assert f'namespace="{namespace}",service="idle-replicas"' in queue["metadata"]["query"]
    assert pending["metadata"]["query"] == f'sum(vif_router_pending_requests{{namespace="{namespace}",service="idle"}})'
    assert wait_for(lambda: degraded_reason("idle", namespace, "False"), "idle no longer Degraded") == "AsExpected"
    busy = wait_for(lambda: get("scaledobject", "busy", namespace), "the ScaledObject of busy")
    assert [t["metadata"]["threshold"] for t in busy["spec"]["triggers"]] == ["4"]
    wait_for(lambda: get("hpa", "busy", namespace) is None, "the operator's HPA of busy pruned")
    assert get("deployment", "busy", namespace)["spec"]["replicas"] == 1
    assert "vif-operator" not in replicas_managers("busy", namespace)  # the count is KEDA's HPA's to set

    # KEDA's CRD goes (and its ScaledObjects with it): back to the HPA, and scale to zero Degraded again
    uninstall_keda()
    wait_for(lambda: get("hpa", "busy", namespace), "the HPA of busy again")
    assert wait_for(lambda: degraded_reason("idle", namespace, "True"), "idle Degraded again") == "KEDARequired"
    assert get("hpa", "idle", namespace) is None
