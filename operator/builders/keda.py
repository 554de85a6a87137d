"""KEDA's ScaledObject for a model's autoscaling, and what keeps a model's autoscaling from being served.

Where KEDA is installed (its CRD `scaledobjects.keda.sh`), the operator makes a ScaledObject instead of an HPA;
KEDA makes and drives the HPA (`keda-hpa-<model>`) and scales the Deployment to and from zero itself. The queue
and KV-cache signals are Prometheus queries on what the runtime pods serve at /metrics (vLLM's engine gauges,
which `runtime/engine/args.py` keeps on), selected by the labels a ServiceMonitor's scrape adds: `namespace`,
and `service`, the Service the pods were scraped through.
"""

from __future__ import annotations

from typing import Any

from vif.operator.builders.routing import replicas_service_name, wants_router
from vif.operator.builders.scaling import deployment_target, scale_down_behavior
from vif.operator.kinds import SCALED_OBJECT
from vif.operator.model_ref import ModelRef
from vif.operator.names import MANAGED_BY_LABEL, MODEL_LABEL
from vif.operator.reasons import Reason
from vif.operator.settings import OperatorSettings
from vif.operator.spec import DEFAULT_TARGETS

# KEDA copies a ScaledObject's labels onto the HPA it makes, but these: with them the operator would watch KEDA's
# HPA as one of the model's own children, and it would claim to be managed by the operator.
HPA_EXCLUDED_LABELS = {"scaledobject.keda.sh/hpa-excluded-labels": f"{MANAGED_BY_LABEL},{MODEL_LABEL}"}
# vLLM's gauges (labels model_name and engine) and the router's (runtime/router/metrics.py).
QUEUE_SERIES = "vllm:num_requests_(waiting|running)"
KV_CACHE_SERIES = "vllm:kv_cache_usage_perc"  # 0..1
ROUTER_PENDING_SERIES = "vif_router_pending_requests"


def scraped_service(ref: ModelRef) -> str:
    """The Service the runtime pods are scraped through: with a router the model's Service selects the router's
    pods (scraped too, as `service=<model>`), and `<model>-replicas` the runtime's."""
    return replicas_service_name(ref) if wants_router(ref) else ref.name


def _selector(ref: ModelRef, service: str) -> str:
    return f'namespace="{ref.namespace}",service="{service}"'


def load_query(ref: ModelRef) -> str:
    """The model's total load over all replicas: KEDA's AverageValue target divides it by the replica count."""
    assert ref.spec.autoscaling is not None
    selector = _selector(ref, scraped_service(ref))
    if ref.spec.autoscaling.metric == "kv-cache":
        return f"100 * sum({KV_CACHE_SERIES}{{{selector}}})"  # percent points, summed over the replicas
    return f'sum({{__name__=~"{QUEUE_SERIES}",{selector}}})'  # both gauges in one selector: either may be absent


def pending_query(ref: ModelRef) -> str:
    """Requests the router holds for want of a ready replica (the model's Service selects the router's pods)."""
    return f"sum({ROUTER_PENDING_SERIES}{{{_selector(ref, ref.name)}}})"


def _prometheus_trigger(name: str, address: str, query: str, threshold: int) -> dict[str, Any]:
    # KEDA reads an empty result as 0 (ignoreNullValues defaults to true): no replica, no series, no load.
    metadata = {"serverAddress": address, "query": query, "threshold": str(threshold), "activationThreshold": "0"}
    return {"type": "prometheus", "name": name, "metadata": metadata}


def triggers(ref: ModelRef, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The metric's trigger; with minReplicas 0 behind a router also the router's pending requests, the one signal
    there is while no replica runs (a held request wakes the model)."""
    scaling = ref.spec.autoscaling
    assert scaling is not None
    if scaling.metric == "cpu":
        return [{"type": "cpu", "name": "cpu", "metricType": "Utilization",
                 "metadata": {"value": str(scaling.target_value)}}]  # fmt: skip
    address = settings.prometheus_address
    found = [_prometheus_trigger(scaling.metric, address, load_query(ref), scaling.target_value)]
    if scaling.min_replicas == 0 and wants_router(ref):
        # Pending requests per replica count like queued ones: the queue's target, whatever the metric.
        per_replica = scaling.target_value if scaling.metric == "queue" else DEFAULT_TARGETS["queue"]
        found.append(_prometheus_trigger("router-pending", address, pending_query(ref), per_replica))
    return found


def build_scaled_object(ref: ModelRef, settings: OperatorSettings) -> dict[str, Any] | None:
    """The ScaledObject of the model's Deployment; None without autoscaling. `cooldownPeriod` is KEDA's wait before
    the last replica goes (scaling to zero), the HPA's stabilisation window every other scale-down."""
    scaling = ref.spec.autoscaling
    if scaling is None:
        return None
    delay = scaling.scale_down_delay_seconds
    spec = {
        "scaleTargetRef": deployment_target(ref),
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "cooldownPeriod": delay,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": scale_down_behavior(delay)}},
        "triggers": triggers(ref, settings),
    }
    metadata = {**ref.metadata(), "annotations": HPA_EXCLUDED_LABELS}
    return SCALED_OBJECT.manifest(metadata, spec=spec)


def autoscaling_problem(ref: ModelRef, settings: OperatorSettings, keda_installed: bool) -> tuple[str, str] | None:
    """Why the model's autoscaling cannot be served here, as (reason, message); the model then runs
    spec.replicas without an autoscaler, Degraded, until the cluster or the operator's settings change."""
    scaling = ref.spec.autoscaling
    if scaling is None:
        return None
    fallback = f"serving spec.replicas ({ref.spec.replicas}) without autoscaling"
    if not keda_installed and (scaling.min_replicas == 0 or scaling.metric == "kv-cache"):
        needs = "autoscaling.minReplicas 0" if scaling.min_replicas == 0 else "autoscaling.metric kv-cache"
        return Reason.KEDA_REQUIRED, f"{needs} needs KEDA, and {SCALED_OBJECT.crd} is not installed; {fallback}"
    if keda_installed and scaling.metric != "cpu" and not settings.prometheus_address:
        return Reason.PROMETHEUS_ADDRESS_MISSING, (
            f"autoscaling.metric {scaling.metric} is a Prometheus query and the operator has no Prometheus address"
            f" (--prometheus-address, chart value autoscaling.prometheusAddress); {fallback}"
        )
    return None
