"""reconcile and apply against an in-memory API: ownership, no-op skips, hand-over, pruning, failure mapping."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.fake_kube import FakeKubeAPI, fake_cluster, model_body
from vif.operator.apply import HANDOVER_MANAGER, Cluster, holds
from vif.operator.kube_api import APIError
from vif.operator.names import APPLIED_HASH
from vif.operator.reconcile import reconcile
from vif.operator.settings import OperatorSettings

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}
SETTINGS = OperatorSettings(runtime_image="vif-runtime:test")


def watched(cluster: Cluster, api: FakeKubeAPI) -> None:
    """What the child watches would have delivered: every object the fake holds, into the cache."""
    for (kind, _, _), obj in api.objects.items():
        if kind != "InferenceModel":
            cluster.children.saw(kind, obj, deleted=False)


def converged(spec: dict[str, Any] = SPEC) -> tuple[Cluster, FakeKubeAPI, dict[str, Any]]:
    cluster, api = fake_cluster()
    body = model_body("chat", spec)
    outcome = reconcile(body, cluster, SETTINGS)
    assert outcome.failure is None
    watched(cluster, api)
    api.calls.clear()
    return cluster, api, body


def live(api: FakeKubeAPI, kind: str, name: str = "chat") -> dict[str, Any]:
    return api.objects[(kind, "team", name)]


def test_first_reconcile_creates_each_child_without_force_and_marks_it() -> None:
    cluster, api = fake_cluster()
    outcome = reconcile(model_body("chat", SPEC), cluster, SETTINGS)
    assert outcome.failure is None
    kinds = [kind for verb, kind, _ in api.calls if verb == "CREATE"]
    # The router's (a model has one by default) after the Service it fronts.
    assert kinds == ["ServiceAccount", "ConfigMap", "ConfigMap", "Deployment", "Service",
                     "ServiceAccount", "Role", "RoleBinding", "Service", "Deployment"]  # fmt: skip
    assert not [c for c in api.calls if c[0] == "APPLY"]  # nothing forced onto objects it did not make
    assert all(APPLIED_HASH in obj["metadata"]["annotations"] for obj in api.objects.values())
    assert outcome.status["conditions"][0]["type"] == "Ready"


def test_an_unchanged_model_costs_no_request() -> None:
    cluster, api, body = converged()
    outcome = reconcile(body, cluster, SETTINGS)
    assert outcome.failure is None and api.calls == []


def test_a_hand_edit_is_reverted_with_one_forced_apply() -> None:
    cluster, api, body = converged()
    edited = live(api, "Deployment")
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    cluster.children.saw("Deployment", edited, deleted=False)
    reconcile(body, cluster, SETTINGS)
    assert api.calls == [("APPLY", "Deployment", "chat")]
    assert live(api, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == "vif-runtime:test"


def test_an_object_it_does_not_own_is_left_alone() -> None:
    cluster, api = fake_cluster()
    theirs = api.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "namespace": "team"},
                      "spec": {"selector": {"app": "theirs"}}})  # fmt: skip
    outcome = reconcile(model_body("chat", SPEC), cluster, SETTINGS)
    assert outcome.failure is not None and outcome.failure[0] == "NameConflict"
    assert "Service/chat" in outcome.failure[1]
    assert api.writes() == []  # nothing at all was changed, not even the children that had no conflict
    assert live(api, "Service") == theirs
    assert outcome.status["conditions"][2] | {"lastTransitionTime": None} == {
        "type": "Degraded", "status": "True", "reason": "NameConflict", "message": outcome.failure[1],
        "observedGeneration": 1, "lastTransitionTime": None,
    }  # fmt: skip


def test_a_child_of_another_model_with_the_same_name_is_a_conflict() -> None:
    cluster, api, _ = converged()
    outcome = reconcile(model_body("chat", SPEC, uid="newer-model"), cluster, SETTINGS)
    assert outcome.failure is not None and outcome.failure[0] == "NameConflict" and "model-uid" in outcome.failure[1]
    assert api.writes() == []


def test_an_object_created_meanwhile_is_not_taken_over() -> None:
    cluster, api = fake_cluster()
    original_apply = api.apply

    def someone_was_faster(obj: dict[str, Any], *, force: bool, manager: str = "vif-operator") -> dict[str, Any]:
        if obj["kind"] == "Service" and not force:
            api.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "namespace": "team"},
                     "spec": {"selector": {"app": "theirs"}}})  # fmt: skip
            raise APIError(409, "Apply failed with 1 conflict")
        return original_apply(obj, force=force, manager=manager)

    api.apply = someone_was_faster  # type: ignore[method-assign]
    outcome = reconcile(model_body("chat", SPEC), cluster, SETTINGS)
    assert outcome.failure is not None and outcome.failure[0] == "NameConflict"
    assert live(api, "Service")["spec"] == {"selector": {"app": "theirs"}}


@pytest.mark.parametrize("status", [0, 409, 429, 500, 503, 404])
def test_transient_failures_are_raised_for_a_retry(status: int) -> None:
    cluster, api = fake_cluster()
    api.failures = [APIError(status, "try again")]
    with pytest.raises(APIError) as raised:
        reconcile(model_body("chat", SPEC), cluster, SETTINGS)
    assert raised.value.status == status


@pytest.mark.parametrize("status", [400, 403, 422])
def test_refusals_become_apply_failed(status: int) -> None:
    cluster, api = fake_cluster()
    api.failures = [APIError(status, "spec.template: Invalid value")]
    outcome = reconcile(model_body("chat", SPEC), cluster, SETTINGS)
    assert outcome.failure == ("ApplyFailed", "spec.template: Invalid value")


def test_switching_autoscaling_on_hands_the_replica_count_over_first() -> None:
    cluster, api, body = converged({**SPEC, "replicas": 3})
    body["spec"] = {**SPEC, "replicas": 3, "autoscaling": {"minReplicas": 1, "maxReplicas": 5, "metric": "cpu"}}
    recorded: list[tuple[str, str, Any]] = []
    original_apply = api.apply

    def record(obj: dict[str, Any], *, force: bool, manager: str = "vif-operator") -> dict[str, Any]:
        recorded.append((obj["kind"], manager, obj.get("spec", {}).get("replicas")))
        return original_apply(obj, force=force, manager=manager)

    api.apply = record  # type: ignore[method-assign]
    reconcile(body, cluster, SETTINGS)
    deployment_applies = [r for r in recorded if r[0] == "Deployment"]
    assert deployment_applies == [("Deployment", HANDOVER_MANAGER, 3), ("Deployment", "vif-operator", None)]
    assert ("HorizontalPodAutoscaler", "vif-operator", None) in recorded


def test_a_new_config_keeps_the_old_configmap_until_the_rollout_is_done() -> None:
    cluster, api, body = converged()
    old = next(name for kind, _, name in api.objects if kind == "ConfigMap" and name != "chat-live")
    body["spec"] = {**SPEC, "engine": {"maxModelLen": 1024}}
    reconcile(body, cluster, SETTINGS)
    watched(cluster, api)
    configmaps = sorted(name for kind, _, name in api.objects if kind == "ConfigMap")
    assert len(configmaps) == 3 and old in configmaps  # the running pods still mount the old one (and the live one)

    deployment = live(api, "Deployment")
    deployment["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    cluster.children.saw("Deployment", deployment, deleted=False)
    outcome = reconcile(body, cluster, SETTINGS)
    assert outcome.pruned == (f"ConfigMap/{old}",)
    assert old not in [name for kind, _, name in api.objects if kind == "ConfigMap"]


def test_a_refused_deployment_leaves_the_running_config_in_place() -> None:
    cluster, api, body = converged()
    before = {name for kind, _, name in api.objects if kind == "ConfigMap"}
    body["spec"] = {**SPEC, "engine": {"maxModelLen": 1024}}
    original_apply = api.apply

    def refuse_deployments(obj: dict[str, Any], *, force: bool, manager: str = "vif-operator") -> dict[str, Any]:
        if obj["kind"] == "Deployment":
            raise APIError(422, "Deployment.apps is invalid")
        return original_apply(obj, force=force, manager=manager)

    api.apply = refuse_deployments  # type: ignore[method-assign]
    outcome = reconcile(body, cluster, SETTINGS)
    assert outcome.failure == ("ApplyFailed", "Deployment.apps is invalid")
    assert before <= {name for kind, _, name in api.objects if kind == "ConfigMap"}
    assert not [c for c in api.calls if c[0] == "DELETE"]


def test_dropped_kinds_are_pruned() -> None:
    cluster, api, body = converged({**SPEC, "replicas": 2})
    assert ("PodDisruptionBudget", "team", "chat") in api.objects
    body["spec"] = {**SPEC, "replicas": 1}
    outcome = reconcile(body, cluster, SETTINGS)
    assert outcome.pruned == ("PodDisruptionBudget/chat",)
    assert ("PodDisruptionBudget", "team", "chat") not in api.objects


def test_service_monitor_on_without_its_crd_is_degraded_without_writes() -> None:
    cluster, api = fake_cluster()
    outcome = reconcile(model_body("chat", {**SPEC, "monitoring": {"serviceMonitor": "on"}}), cluster, SETTINGS)
    assert outcome.failure is not None and outcome.failure[0] == "KindNotInstalled"
    assert api.writes() == []


def test_holds_accepts_server_defaults_and_catches_edits() -> None:
    wanted = {"spec": {"ports": [{"port": 80, "targetPort": "http"}], "type": "ClusterIP"}}
    defaulted = {"spec": {"ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}], "type": "ClusterIP",
                          "clusterIP": "10.96.0.7"}}  # fmt: skip
    assert holds(wanted, defaulted)
    assert not holds(wanted, {"spec": {**defaulted["spec"], "type": "NodePort"}})
    assert not holds(wanted, {"spec": {**defaulted["spec"], "ports": []}})


def test_a_policy_violation_is_degraded_with_nothing_applied() -> None:
    cluster, api = fake_cluster()
    outcome = reconcile(model_body("chat", {**SPEC, "image": "registry.example/other:1"}), cluster, SETTINGS)
    assert outcome.failure is not None and outcome.failure[0] == "PolicyViolation"
    assert "spec.image" in outcome.failure[1]
    assert api.calls == []
