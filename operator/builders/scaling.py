"""The HorizontalPodAutoscaler (autoscaling/v2) and the PodDisruptionBudget."""

from __future__ import annotations

from typing import Any

from vif.operator.kinds import DEPLOYMENT, HPA, PDB
from vif.operator.model_ref import ModelRef

# The queue signal as a pods metric: the runtime's gauge of requests being served (waiting in vLLM or running),
# under its own name, which a metrics adapter (such as prometheus-adapter) serves to the HPA. vLLM's own
# `vllm:num_requests_*` gauges, which KEDA's query adds up (`keda.py`), are two series an HPA cannot add.
QUEUE_POD_METRIC = "vif_requests_in_flight"
# Lets KEDA's admission webhook accept the ScaledObject that replaces this HPA once KEDA is installed: it refuses one
# for a Deployment another HPA scales, and its cache may still hold this HPA just after the operator deleted it.
KEDA_HPA_CHECK_OFF = {"validations.keda.sh/hpa-ownership": "false"}


def build_hpa(ref: ModelRef) -> dict[str, Any] | None:
    """The HPA without KEDA: `queue` or `cpu` (`kv-cache` and minReplicas 0 need KEDA: `keda.autoscaling_problem`)."""
    scaling = ref.spec.autoscaling
    if scaling is None:
        return None
    if scaling.metric == "cpu":
        target = {"type": "Utilization", "averageUtilization": scaling.target_value}
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": target}}
    else:
        target = {"type": "AverageValue", "averageValue": str(scaling.target_value)}
        metric = {"type": "Pods", "pods": {"metric": {"name": QUEUE_POD_METRIC}, "target": target}}
    spec = {
        "scaleTargetRef": deployment_target(ref),
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": [metric],
        "behavior": scale_down_behavior(scaling.scale_down_delay_seconds),
    }
    metadata = {**ref.metadata(), "annotations": KEDA_HPA_CHECK_OFF}
    return HPA.manifest(metadata, spec=spec)


def deployment_target(ref: ModelRef) -> dict[str, str]:
    """What an autoscaler scales: the model's (runtime) Deployment."""
    return {"apiVersion": DEPLOYMENT.api_version, "kind": DEPLOYMENT.name, "name": ref.name}


def scale_down_behavior(delay_seconds: int) -> dict[str, Any]:
    """An HPA's behavior: replicas go only once the load has been low for `delay_seconds`."""
    return {"scaleDown": {"stabilizationWindowSeconds": delay_seconds}}


def build_pdb(ref: ModelRef) -> dict[str, Any] | None:
    """Only with more than one replica: a PDB on a single replica would block node drains forever."""
    scaling = ref.spec.autoscaling
    least = scaling.min_replicas if scaling is not None else ref.spec.replicas
    if least <= 1:
        return None
    spec = {"maxUnavailable": 1, "selector": {"matchLabels": ref.selector()}}
    return PDB.manifest(ref.metadata(), spec=spec)
