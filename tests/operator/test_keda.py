"""Autoscaling: the spec's fields, KEDA's ScaledObject per metric, and the choice between it and the HPA."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from helpers.fake_kube import fake_cluster, model_body
from vif.operator.builders import build_children
from vif.operator.builders.keda import autoscaling_problem
from vif.operator.crd import build_crd
from vif.operator.kinds import KINDS, OWNED_KINDS, SCALED_OBJECT
from vif.operator.model_ref import ModelRef
from vif.operator.reconcile import reconcile
from vif.operator.settings import OperatorSettings
from vif.operator.spec import Autoscaling, InferenceModelSpec

PROMETHEUS = "http://prometheus.monitoring:9090"
SETTINGS = OperatorSettings(runtime_image="vif-runtime:test", prometheus_address=PROMETHEUS)
SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "routing": {"strategy": "none"}}
ROUTED = {**SPEC, "routing": {"strategy": "least-load"}}


def ref_of(spec: dict[str, Any]) -> ModelRef:
    return ModelRef("chat", "team", "uid-1", InferenceModelSpec.model_validate(spec))


def scaled_object(spec: dict[str, Any], settings: OperatorSettings = SETTINGS) -> dict[str, Any]:
    (found,) = [c for c in build_children(ref_of(spec), settings, False, True) if c["kind"] == "ScaledObject"]
    return found


def test_defaults_and_the_deprecated_metric() -> None:
    scaling = Autoscaling.model_validate({})
    assert (scaling.min_replicas, scaling.max_replicas, scaling.metric, scaling.target) == (1, 3, "queue", None)
    assert scaling.scale_down_delay_seconds == 300
    assert [Autoscaling.model_validate({"metric": m}).target_value for m in ("queue", "kv-cache", "cpu")] == [5, 80, 70]
    old = Autoscaling.model_validate({"metric": "waiting-requests", "target": 5})
    assert (old.metric, old.target_value) == ("queue", 5)


@pytest.mark.parametrize("fields", [{"minReplicas": -1}, {"maxReplicas": 0}, {"metric": "gpu"}, {"target": 0},
                                    {"scaleDownDelaySeconds": -1}, {"scaleDownDelaySeconds": 3601}])  # fmt: skip
def test_out_of_range_fields_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Autoscaling.model_validate(fields)


def test_the_crd_keeps_the_fields_consistent() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    autoscaling = spec["properties"]["autoscaling"]
    assert autoscaling["properties"]["metric"]["enum"] == ["queue", "kv-cache", "cpu", "waiting-requests"]
    assert autoscaling["properties"]["minReplicas"]["minimum"] == 0
    rules = {r["rule"]: r["message"] for r in autoscaling["x-kubernetes-validations"]}
    assert rules["self.minReplicas > 0 || self.metric != 'cpu'"].startswith("autoscaling.minReplicas 0 needs metric")
    assert "at most 100" in rules["!has(self.target) || self.metric != 'kv-cache' || self.target <= 100"]


def test_queue_is_vllms_waiting_and_running_requests_of_this_models_pods() -> None:
    obj = scaled_object({**SPEC, "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "target": 8}})
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    excluded = obj["metadata"]["annotations"]["scaledobject.keda.sh/hpa-excluded-labels"].split(",")
    assert excluded == ["app.kubernetes.io/managed-by", "inference.vif.dev/model"]  # KEDA's HPA is not a child
    spec = obj["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (1, 4, 300)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    (trigger,) = spec["triggers"]
    assert trigger == {"type": "prometheus", "name": "queue", "metadata": {
        "serverAddress": PROMETHEUS,
        "query": 'sum({__name__=~"vllm:num_requests_(waiting|running)",namespace="team",service="chat"})',
        "threshold": "8", "activationThreshold": "0",
    }}  # fmt: skip


def test_kv_cache_is_percent_of_vllms_cache_and_the_delay_is_the_cooldown() -> None:
    spec = scaled_object({**SPEC, "autoscaling": {"metric": "kv-cache", "scaleDownDelaySeconds": 60}})["spec"]
    (trigger,) = spec["triggers"]
    assert trigger["metadata"]["query"] == '100 * sum(vllm:kv_cache_usage_perc{namespace="team",service="chat"})'
    assert trigger["metadata"]["threshold"] == "80"
    assert spec["cooldownPeriod"] == 60
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60
    )


def test_cpu_needs_no_prometheus() -> None:
    spec = {**SPEC, "autoscaling": {"metric": "cpu", "target": 60}}
    (trigger,) = scaled_object(spec, OperatorSettings())["spec"]["triggers"]
    assert trigger == {"type": "cpu", "name": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}


def test_behind_a_router_the_replicas_service_is_queried_and_held_requests_wake_the_model() -> None:
    spec = scaled_object({**ROUTED, "autoscaling": {"minReplicas": 0, "metric": "kv-cache"}})["spec"]
    load, pending = spec["triggers"]
    assert 'service="chat-replicas"' in load["metadata"]["query"]
    assert pending["name"] == "router-pending"
    assert pending["metadata"]["query"] == 'sum(vif_router_pending_requests{namespace="team",service="chat"})'
    assert (pending["metadata"]["threshold"], pending["metadata"]["activationThreshold"]) == ("5", "0")
    at_least_one = scaled_object({**ROUTED, "autoscaling": {"minReplicas": 1}})["spec"]["triggers"]
    assert [t["name"] for t in at_least_one] == ["queue"]  # the router's trigger only matters at zero


def test_a_scaled_object_stands_for_the_hpa_where_keda_is_installed() -> None:
    ref = ref_of({**SPEC, "autoscaling": {"minReplicas": 2}})
    with_keda = {c["kind"]: c for c in build_children(ref, SETTINGS, False, True)}
    without = {c["kind"]: c for c in build_children(ref, SETTINGS, False, False)}
    assert "ScaledObject" in with_keda and "HorizontalPodAutoscaler" not in with_keda
    assert "HorizontalPodAutoscaler" in without and "ScaledObject" not in without
    assert "replicas" not in with_keda["Deployment"]["spec"]  # KEDA's HPA owns the count
    assert "ScaledObject" in OWNED_KINDS and set(OWNED_KINDS) <= set(KINDS)


@pytest.mark.parametrize(("autoscaling", "keda", "address", "reason"), [
    ({"minReplicas": 0}, False, PROMETHEUS, "KEDARequired"),
    ({"metric": "kv-cache"}, False, PROMETHEUS, "KEDARequired"),
    ({"metric": "queue"}, True, "", "PrometheusAddressMissing"),
    ({"metric": "cpu"}, True, "", None),
    ({"metric": "queue"}, False, "", None),
    ({"minReplicas": 0}, True, PROMETHEUS, None),
])  # fmt: skip
def test_what_keeps_autoscaling_from_being_served(
    autoscaling: dict[str, Any], keda: bool, address: str, reason: str | None
) -> None:
    problem = autoscaling_problem(
        ref_of({**SPEC, "autoscaling": autoscaling}), OperatorSettings(prometheus_address=address), keda
    )
    assert (problem[0] if problem else None) == reason


def test_scale_to_zero_without_keda_serves_the_spec_replicas_degraded() -> None:
    cluster, api = fake_cluster()
    outcome = reconcile(
        model_body("chat", {**SPEC, "replicas": 2, "autoscaling": {"minReplicas": 0}}), cluster, SETTINGS
    )
    assert outcome.failure is not None and outcome.failure[0] == "KEDARequired"
    assert "autoscaling.minReplicas 0 needs KEDA" in outcome.failure[1]
    kinds = {kind for kind, _, _ in api.objects}
    assert "HorizontalPodAutoscaler" not in kinds and "ScaledObject" not in kinds
    assert api.objects[("Deployment", "team", "chat")]["spec"]["replicas"] == 2
    degraded = next(c for c in outcome.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "KEDARequired")
    assert outcome.status["endpoint"]  # served all the same


def test_keda_appearing_and_going_swaps_the_hpa_and_the_scaled_object() -> None:
    body = model_body("chat", {**SPEC, "autoscaling": {"minReplicas": 1}})
    cluster, api = fake_cluster()
    assert reconcile(body, cluster, SETTINGS).failure is None
    hpa = api.objects[("HorizontalPodAutoscaler", "team", "chat")]
    assert hpa["metadata"]["annotations"]["validations.keda.sh/hpa-ownership"] == "false"
    api.calls.clear()

    cluster.crds.saw(SCALED_OBJECT.crd, deleted=False)  # the watch has not listed the HPA yet: asked for
    assert reconcile(body, cluster, SETTINGS).failure is None
    writes = api.writes()
    assert writes.index(("DELETE", "HorizontalPodAutoscaler", "chat")) < writes.index(
        ("CREATE", "ScaledObject", "chat")
    )
    assert ("HorizontalPodAutoscaler", "team", "chat") not in api.objects
    for (kind, _, _), obj in api.objects.items():
        cluster.children.saw(kind, obj, deleted=False)
    api.calls.clear()
    assert reconcile(body, cluster, SETTINGS).failure is None and api.calls == []  # no GET once it is there

    cluster.crds.saw(SCALED_OBJECT.crd, deleted=True)
    outcome = reconcile(body, cluster, SETTINGS)
    assert outcome.failure is None and outcome.pruned == ("ScaledObject/chat",)
    assert ("HorizontalPodAutoscaler", "team", "chat") in api.objects
    assert cluster.children.get("ScaledObject", "team", "chat", "chat") is None  # forgotten, not deleted again
