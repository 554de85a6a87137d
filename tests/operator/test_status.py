"""Status and conditions computed from a Deployment."""

from __future__ import annotations

from typing import Any

from vif.operator.model_ref import ModelRef
from vif.operator.reconcile import failure_outcome
from vif.operator.spec import InferenceModelSpec
from vif.operator.status import build_status

# Without a router: its readiness counts too (test_routing.py).
PLAIN = {"model": {"path": "/models/m"}, "routing": {"strategy": "none"}}
REF = ModelRef("chat", "ns", "u", InferenceModelSpec.model_validate(PLAIN))


def deployment(desired: int, ready: int, updated: int, stalled: bool = False, generation: int = 2) -> dict[str, Any]:
    conditions = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
    ]
    status = {"replicas": desired, "readyReplicas": ready, "updatedReplicas": updated, "observedGeneration": generation}
    if stalled:
        status["conditions"] = conditions
    return {"metadata": {"generation": 2}, "spec": {"replicas": desired}, "status": status}


def by_type(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_ready_when_all_replicas_are() -> None:
    status = build_status(REF, deployment(2, 2, 2), 7, [])
    assert by_type(status) == {
        "Ready": ("True", "ReplicasReady"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert (status["replicas"], status["readyReplicas"], status["observedGeneration"]) == (2, 2, 7)
    assert status["endpoint"] == "http://chat.ns.svc.cluster.local:80/v1"
    assert status["selector"] == "app.kubernetes.io/instance=chat,app.kubernetes.io/name=vif-runtime"
    assert status["servedName"] == "chat"


def test_rolling_out_and_stalled() -> None:
    assert by_type(build_status(REF, deployment(2, 1, 1), 1, []))["Progressing"] == ("True", "RollingOut")
    assert by_type(build_status(REF, deployment(2, 2, 2, generation=1), 1, []))["Progressing"][0] == "True"
    stalled = by_type(build_status(REF, deployment(2, 0, 2, stalled=True), 1, []))
    assert stalled["Degraded"] == ("True", "ProgressDeadlineExceeded") and stalled["Ready"][0] == "False"


def test_scaled_to_zero_and_missing() -> None:
    assert by_type(build_status(REF, deployment(0, 0, 0), 1, []))["Ready"] == ("False", "ScaledToZero")
    assert by_type(build_status(REF, None, 1, []))["Ready"] == ("False", "DeploymentMissing")


def test_failure_is_degraded() -> None:
    body = {"metadata": {"generation": 3}, "status": {"conditions": []}}
    outcome = failure_outcome(body, "InvalidSpec", "bad")
    assert by_type(outcome.status)["Degraded"] == ("True", "InvalidSpec")
    assert by_type(outcome.status)["Ready"] == ("False", "InvalidSpec")
    assert all(c["message"] == "bad" and c["observedGeneration"] == 3 for c in outcome.status["conditions"])
    assert outcome.failure == ("InvalidSpec", "bad")


def test_transition_time_kept_while_status_holds() -> None:
    first = build_status(REF, deployment(1, 0, 1), 1, [])
    old = [{**c, "lastTransitionTime": "2020-01-01T00:00:00Z"} for c in first["conditions"]]
    second = {c["type"]: c for c in build_status(REF, deployment(1, 1, 1), 1, old)["conditions"]}
    assert second["Degraded"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"  # still False
    assert second["Ready"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"  # False -> True


def with_conditions(*conditions: dict[str, Any]) -> dict[str, Any]:
    obj = deployment(1, 0, 0)
    obj["status"]["conditions"] = list(conditions)
    return obj


FORBIDDEN = 'pods "chat-7d9-x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true'
REPLICA_FAILURE = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": FORBIDDEN}


def test_pod_creation_refused_is_degraded_at_once() -> None:
    """A refused pod shows in the Deployment's ReplicaFailure at once: no waiting for the progress deadline."""
    progressing = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": ""}
    status = build_status(REF, with_conditions(progressing, REPLICA_FAILURE), 1, [])
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == ("True", "FailedCreate", FORBIDDEN)
    assert by_type(status)["Ready"] == ("False", "ReplicasNotReady")


def test_replica_failure_wins_over_the_deadline_and_clears() -> None:
    stalled = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "slow"}
    both = by_type(build_status(REF, with_conditions(stalled, REPLICA_FAILURE), 1, []))
    assert both["Degraded"] == ("True", "FailedCreate")
    cleared = {**REPLICA_FAILURE, "status": "False"}
    assert by_type(build_status(REF, with_conditions(cleared), 1, []))["Degraded"] == ("False", "AsExpected")
