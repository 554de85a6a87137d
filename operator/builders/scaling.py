"""The HorizontalPodAutoscaler (autoscaling/v2) and the PodDisruptionBudget."""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import ModelRef

# vLLM exports `vllm:num_requests_waiting`; a Prometheus adapter serves it to the HPA under this name.
WAITING_METRIC = "vllm_num_requests_waiting"


def build_hpa(ref: ModelRef) -> dict[str, Any] | None:
    scaling = ref.spec.autoscaling
    if scaling is None:
        return None
    if scaling.metric == "cpu":
        target = {"type": "Utilization", "averageUtilization": scaling.target}
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": target}}
    else:
        target = {"type": "AverageValue", "averageValue": str(scaling.target)}
        metric = {"type": "Pods", "pods": {"metric": {"name": WAITING_METRIC}, "target": target}}
    spec = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ref.name},
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": [metric],
    }
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": ref.metadata(), "spec": spec}


def build_pdb(ref: ModelRef) -> dict[str, Any] | None:
    """Only with more than one replica: a PDB on a single replica would block node drains forever."""
    scaling = ref.spec.autoscaling
    least = scaling.min_replicas if scaling is not None else ref.spec.replicas
    if least <= 1:
        return None
    spec = {"maxUnavailable": 1, "selector": {"matchLabels": ref.selector()}}
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": ref.metadata(), "spec": spec}
