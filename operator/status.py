"""The InferenceModel's status, computed from its Deployment: pure, so it is tested without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vif.operator.builders.routing import wants_router
from vif.operator.model_ref import ModelRef
from vif.operator.reasons import Reason


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, ok: bool, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    status = "True" if ok else "False"
    return {"type": kind, "status": status, "reason": reason, "message": message, "observedGeneration": generation}


def rollout_failure(conditions: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Why the Deployment cannot make progress, as (reason, message), if it says so.

    `ReplicaFailure` comes first: the ReplicaSet could not create a pod (FailedCreate: refused by Pod Security
    admission, a quota, a missing ServiceAccount...) and the Deployment reports it at once, while
    `ProgressDeadlineExceeded` only appears after the progress deadline (10 minutes by default).
    """
    by_type = {c.get("type"): c for c in conditions}
    failed = by_type.get("ReplicaFailure")
    if failed is not None and failed.get("status") == "True":
        return failed.get("reason") or "ReplicaFailure", failed.get("message") or ""
    stalled = by_type.get("Progressing")
    if stalled is not None and stalled.get("reason") == "ProgressDeadlineExceeded":
        return "ProgressDeadlineExceeded", stalled.get("message") or ""
    return None


def rollout_conditions(deployment: dict[str, Any] | None, generation: int | None) -> list[dict[str, Any]]:
    """Ready, Progressing and Degraded from the Deployment's own status."""
    if deployment is None:
        return [
            condition("Ready", False, Reason.DEPLOYMENT_MISSING, "the Deployment does not exist yet", generation),
            condition("Progressing", True, Reason.CREATING, "creating the Deployment", generation),
            condition("Degraded", False, Reason.AS_EXPECTED, "", generation),
        ]
    dstatus = deployment.get("status", {})
    desired = deployment.get("spec", {}).get("replicas", 1)
    ready = dstatus.get("readyReplicas", 0)
    updated = dstatus.get("updatedReplicas", 0)
    current = dstatus.get("observedGeneration", 0) >= deployment.get("metadata", {}).get("generation", 0)
    failure = rollout_failure(dstatus.get("conditions") or [])
    counted = f"{ready}/{desired} replicas ready"
    if desired == 0:
        ready_cond = condition("Ready", False, Reason.SCALED_TO_ZERO, "0 replicas requested", generation)
    elif ready >= desired:
        ready_cond = condition("Ready", True, Reason.REPLICAS_READY, counted, generation)
    else:
        ready_cond = condition("Ready", False, Reason.REPLICAS_NOT_READY, counted, generation)
    rolling = not current or updated < desired or ready < desired
    progressing = condition(
        "Progressing",
        rolling,
        Reason.ROLLING_OUT if rolling else Reason.ROLLOUT_COMPLETE,
        f"{updated}/{desired} updated",
        generation,
    )
    if failure is not None:
        degraded = condition("Degraded", True, failure[0], failure[1], generation)
    else:
        degraded = condition("Degraded", False, Reason.AS_EXPECTED, "", generation)
    return [ready_cond, progressing, degraded]


def failed_conditions(reason: str, message: str, generation: int | None) -> list[dict[str, Any]]:
    """The spec cannot be served as it is: Degraded, and neither Ready nor Progressing."""
    return [
        condition("Ready", False, reason, message, generation),
        condition("Progressing", False, reason, message, generation),
        condition("Degraded", True, reason, message, generation),
    ]


def with_transition_times(new: list[dict[str, Any]], old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep a condition's lastTransitionTime while its status does not change."""
    before = {c.get("type"): c for c in old}
    stamped = []
    for cond in new:
        prior = before.get(cond["type"])
        kept = prior.get("lastTransitionTime") if prior is not None and prior.get("status") == cond["status"] else None
        stamped.append({**cond, "lastTransitionTime": kept or now()})
    return stamped


def with_router(
    conditions: list[dict[str, Any]], router: dict[str, Any] | None, generation: int | None
) -> list[dict[str, Any]]:
    """A model behind a router is Ready only while a router pod is: clients reach the replicas through it."""
    ready = (router or {}).get("status", {}).get("readyReplicas", 0)
    if ready >= 1:
        return conditions
    if router is None:
        message = "the router's Deployment does not exist yet"
    else:
        message = f"0/{router.get('spec', {}).get('replicas', 1)} router replicas ready"
    return [
        condition("Ready", False, Reason.ROUTER_NOT_READY, message, generation)
        if c["type"] == "Ready" and c["status"] == "True"
        else c
        for c in conditions
    ]


def wakes_from_zero(ref: ModelRef) -> bool:
    """An autoscaler may take the model to zero replicas, and a router holds its requests meanwhile: at zero it
    still serves, a replica coming back for the first request."""
    scaling = ref.spec.autoscaling
    return scaling is not None and scaling.min_replicas == 0 and wants_router(ref)


def _serving_from_zero(cond: dict[str, Any], generation: int | None) -> dict[str, Any]:
    if cond["type"] != "Ready" or cond["reason"] != Reason.SCALED_TO_ZERO:
        return cond
    message = "scaled to zero while idle: the router holds the next request until a replica is ready"
    return condition("Ready", True, Reason.SCALED_TO_ZERO, message, generation)


def build_status(
    ref: ModelRef,
    deployment: dict[str, Any] | None,
    generation: int | None,
    old_conditions: list[dict[str, Any]],
    router: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`router`: the router's Deployment when the model has one (spec.routing), else None and not consulted."""
    dstatus = (deployment or {}).get("status", {})
    conditions = rollout_conditions(deployment, generation)
    if wakes_from_zero(ref) and deployment is not None and deployment.get("spec", {}).get("replicas", 1) == 0:
        conditions = [_serving_from_zero(c, generation) for c in conditions]
    if wants_router(ref):
        conditions = with_router(conditions, router, generation)
    selector = ",".join(f"{k}={v}" for k, v in sorted(ref.selector().items()))
    return {
        "observedGeneration": generation,
        "servedName": ref.served_name,
        "replicas": dstatus.get("replicas", 0),
        "readyReplicas": dstatus.get("readyReplicas", 0),
        "selector": selector,
        "endpoint": ref.endpoint(),
        "conditions": with_transition_times(conditions, old_conditions),
    }
