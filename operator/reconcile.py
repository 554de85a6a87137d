"""One reconciliation: the desired children applied, stale ones pruned, the status computed.

Called by every kopf handler (create, update, resume, a child's change), so all of them converge the same
way; applying is idempotent, so calling it often is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from vif.operator.apply import SERVICE_MONITOR_CRD, ClusterClient
from vif.operator.builders import ModelRef, OperatorSettings, build_children
from vif.operator.feasibility import problems
from vif.operator.spec import InferenceModelSpec
from vif.operator.status import build_status, failed_conditions, with_transition_times


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
    found = problems(spec)
    if found:
        raise InvalidSpec("; ".join(found))
    return ModelRef(meta["name"], meta["namespace"], meta["uid"], spec)


def reconcile(body: dict[str, Any], cluster: ClusterClient, settings: OperatorSettings) -> Outcome:
    meta = body["metadata"]
    generation = meta.get("generation")
    old_conditions = (body.get("status") or {}).get("conditions", [])
    try:
        ref = parse(body)
    except InvalidSpec as exc:
        return failure_outcome(body, "InvalidSpec", str(exc))
    children = build_children(ref, settings, cluster.crd_installed(SERVICE_MONITOR_CRD))
    deployment = None
    for child in children:
        applied = cluster.apply(child)
        if child["kind"] == "Deployment":
            deployment = applied
    pruned = cluster.prune(ref, {c["kind"] for c in children})
    return Outcome(build_status(ref, deployment, generation, old_conditions), None, tuple(pruned))


def failure_outcome(body: dict[str, Any], reason: str, message: str) -> Outcome:
    """The model cannot be served as it is: Degraded (and neither Ready nor Progressing) with the reason."""
    generation = body["metadata"].get("generation")
    old = (body.get("status") or {}).get("conditions", [])
    conditions = with_transition_times(failed_conditions(reason, message, generation), old)
    return Outcome({"observedGeneration": generation, "conditions": conditions}, (reason, message))
