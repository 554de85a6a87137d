"""One reconciliation: the spec checked, the children made to match, stale ones pruned, the status computed.

Called by every kopf handler (create, update, resume, a child's change), so all of them converge the same
way. A model whose children already match costs no API request (see `apply`), so calling it often is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from vif.operator.apply import Cluster, NameConflict, current_children, key, prune, sync_child
from vif.operator.builders import build_children, wants_service_monitor
from vif.operator.builders.common import tracing_problem
from vif.operator.builders.inference_pool import wants_inference_pool
from vif.operator.builders.keda import autoscaling_problem
from vif.operator.builders.model_cache import cached_source
from vif.operator.builders.routing import router_name
from vif.operator.download_status import failure
from vif.operator.kinds import INFERENCE_POOL, SCALED_OBJECT, SERVICE_MONITOR
from vif.operator.kube_api import APIError
from vif.operator.live_status import live_refusal
from vif.operator.model_ref import ModelRef
from vif.operator.policy import policy_violations
from vif.operator.reasons import Reason
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec
from vif.operator.status import build_status, condition, failed_conditions, with_transition_times


@dataclass(frozen=True)
class Outcome:
    """What happened, for the handler to report: the new status, and the failure reason if any."""

    status: dict[str, Any]
    failure: tuple[str, str] | None = None
    pruned: tuple[str, ...] = ()


class InvalidSpec(ValueError):
    """The spec passed the API server's schema but cannot be served."""


def parse(body: dict[str, Any]) -> ModelRef:
    meta = body["metadata"]
    try:
        spec = InferenceModelSpec.model_validate(body.get("spec", {}))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise InvalidSpec(f"spec.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return ModelRef(meta["name"], meta["namespace"], meta["uid"], spec)


def reconcile(body: dict[str, Any], cluster: Cluster, settings: OperatorSettings) -> Outcome:
    """Raises `APIError` only for what is worth retrying (see `APIError.transient`, and 404 while a namespace
    or CRD is still appearing); everything else becomes a Degraded outcome."""
    try:
        ref = parse(body)
    except InvalidSpec as exc:
        return failure_outcome(body, Reason.INVALID_SPEC, str(exc))
    refused = policy_violations(ref.spec, settings.policy, settings.runtime_image)
    if refused:
        return failure_outcome(body, Reason.POLICY_VIOLATION, "; ".join(refused))
    crd_installed = SERVICE_MONITOR.crd in cluster.crds
    if ref.spec.monitoring.service_monitor == "on" and not crd_installed:
        return failure_outcome(body, Reason.KIND_NOT_INSTALLED, f"monitoring.serviceMonitor is on but "
                               f"{SERVICE_MONITOR.crd} is not installed (the Prometheus Operator)")  # fmt: skip
    pool_installed = INFERENCE_POOL.crd in cluster.crds
    if ref.spec.inference_pool.mode == "on" and not pool_installed:
        return failure_outcome(body, Reason.KIND_NOT_INSTALLED, f"inferencePool.mode is on but {INFERENCE_POOL.crd}"
                               " is not installed (the Gateway API Inference Extension)")  # fmt: skip
    keda_installed = SCALED_OBJECT.crd in cluster.crds
    unscaled = autoscaling_problem(ref, settings, keda_installed)
    if unscaled is not None:  # served at spec.replicas, Degraded, rather than not at all
        ref = replace(ref, spec=ref.spec.model_copy(update={"autoscaling": None}))
    desired = build_children(
        ref, settings, wants_service_monitor(ref, crd_installed), keda_installed,
        wants_inference_pool(ref, pool_installed),
    )  # fmt: skip
    try:
        live = current_children(cluster, ref, desired)
        applied = {key(child): sync_child(cluster, ref, child, live[key(child)]) for child in desired}
        deployment = applied.get(("Deployment", ref.name))  # the runtime's, not the router's
        pruned = prune(cluster, ref, desired, deployment)
    except NameConflict as exc:
        return failure_outcome(body, Reason.NAME_CONFLICT, str(exc))
    except APIError as exc:
        if exc.transient or exc.status == 404:
            raise
        return failure_outcome(body, Reason.APPLY_FAILED, exc.message)
    router = applied.get(("Deployment", router_name(ref)))
    status = build_status(ref, deployment, body["metadata"].get("generation"), _conditions(body), router)
    # A failed download (downloads.py writes it) is the more urgent: no replica can start.
    problem = failure((body.get("status") or {}).get("download")) if cached_source(ref) else None
    problem = problem or unscaled or tracing_problem(ref, settings) or live_refusal(body)
    if problem is not None:
        status["conditions"] = with_degraded(status["conditions"], problem, status["observedGeneration"], body)
    return Outcome(status, problem, tuple(pruned))


def failure_outcome(body: dict[str, Any], reason: str, message: str) -> Outcome:
    """The model cannot be served as it is: Degraded (and neither Ready nor Progressing) with the reason."""
    generation = body["metadata"].get("generation")
    conditions = with_transition_times(failed_conditions(reason, message, generation), _conditions(body))
    return Outcome({"observedGeneration": generation, "conditions": conditions}, (reason, message))


def with_degraded(
    conditions: list[dict[str, Any]], problem: tuple[str, str], generation: int | None, body: dict[str, Any]
) -> list[dict[str, Any]]:
    """The conditions of a model that is served, but not as asked: Degraded with the problem's reason (unless the
    rollout's own failure already makes it Degraded: that one is the more urgent)."""
    degraded = condition("Degraded", True, *problem, generation)
    replaced = [degraded if c["type"] == "Degraded" and c["status"] == "False" else c for c in conditions]
    return with_transition_times(replaced, _conditions(body))


def _conditions(body: dict[str, Any]) -> list[dict[str, Any]]:
    return (body.get("status") or {}).get("conditions", [])
