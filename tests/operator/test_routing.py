"""spec.routing: the router's children as pure builders, and switching strategies against the in-memory API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.utils import parse_quantity
from pydantic import ValidationError

from helpers.fake_kube import FakeKubeAPI, fake_cluster, model_body
from vif.operator.apply import Cluster
from vif.operator.builders import build_children
from vif.operator.builders.routing import ROUTER_MAX_BODY_BYTES, ROUTER_MAX_HELD, ROUTER_MEMORY_LIMIT
from vif.operator.builders.security import container_security_context, pod_security_context
from vif.operator.kinds import KINDS, OWNED_KINDS
from vif.operator.model_ref import ModelRef
from vif.operator.names import MODEL_LABEL, router_selector, selector
from vif.operator.reconcile import reconcile
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec
from vif.operator.status import build_status

SETTINGS = OperatorSettings(runtime_image="registry.local/vif-runtime:test")
MODEL = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "servedName": "smollm2"}
ROUTED = {**MODEL, "routing": {"strategy": "least-load", "replicas": 2}}
PLAIN = {**MODEL, "routing": {"strategy": "none"}}
ROUTER_CHILDREN = {
    ("ServiceAccount", "chat-router"),
    ("Role", "chat-router"),
    ("RoleBinding", "chat-router"),
    ("Service", "chat-replicas"),
    ("Deployment", "chat-router"),
}


def ref_of(spec: dict[str, Any]) -> ModelRef:
    return ModelRef("chat", "team-a", "uid-1", InferenceModelSpec.model_validate(spec))


def children(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["kind"], c["metadata"]["name"]): c for c in build_children(ref_of(spec), SETTINGS, False)}


def test_routing_defaults_to_prefix_hash_with_one_router() -> None:
    for spec in (MODEL, {**MODEL, "routing": {}}):
        routing = InferenceModelSpec.model_validate(spec).routing
        assert (routing.strategy, routing.replicas) == ("prefix-hash", 1)
    assert set(children(MODEL)) >= ROUTER_CHILDREN
    args = children(MODEL)["Deployment", "chat-router"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--strategy") + 1] == "prefix-hash"
    bad_fields = ({"replicas": 0}, {"strategy": "random"}, {"maxWaitSeconds": 0}, {"maxWaitSeconds": 3601},
                  {"firstByteTimeoutSeconds": 0}, {"idleTimeoutSeconds": 3601})  # fmt: skip
    for bad in bad_fields:
        with pytest.raises(ValidationError):
            InferenceModelSpec.model_validate({**MODEL, "routing": bad})


@pytest.mark.parametrize("routing", [{"strategy": "none"}, {"strategy": "none", "replicas": 3}])
def test_strategy_none_is_a_plain_service(routing: dict[str, Any]) -> None:
    objs = children({**MODEL, "routing": routing})
    config = next(n for k, n in objs if k == "ConfigMap" and n != "chat-live")
    assert set(objs) == {("ServiceAccount", "chat"), ("ConfigMap", config), ("ConfigMap", "chat-live"),
                         ("Deployment", "chat"), ("Service", "chat")}  # fmt: skip
    assert objs["Service", "chat"]["spec"]["selector"] == selector("chat")


def test_a_router_fronts_the_replicas() -> None:
    objs = children(ROUTED)
    assert set(objs) >= ROUTER_CHILDREN
    front, replicas = objs["Service", "chat"], objs["Service", "chat-replicas"]
    assert front["spec"]["selector"] == router_selector("chat")
    assert front["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},  # the router's, for Prometheus
    ]
    runtime = objs["Deployment", "chat"]
    assert replicas["spec"]["selector"] == selector("chat") == runtime["spec"]["selector"]["matchLabels"]
    assert replicas["spec"]["type"] == "ClusterIP" and replicas["spec"]["ports"][0]["name"] == "http"
    # The two selectors never pick each other's pods.
    router_pods = objs["Deployment", "chat-router"]["spec"]["template"]["metadata"]["labels"]
    runtime_pods = runtime["spec"]["template"]["metadata"]["labels"]
    assert not selector("chat").items() <= router_pods.items()
    assert not router_selector("chat").items() <= runtime_pods.items()
    for obj in objs.values():
        assert obj["metadata"]["labels"][MODEL_LABEL] == "chat"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_router_deployment() -> None:
    deployment = children(ROUTED)["Deployment", "chat-router"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == router_selector("chat")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "chat-router" and pod["automountServiceAccountToken"] is True
    assert pod["securityContext"] == pod_security_context()
    assert all(v["emptyDir"]["sizeLimit"] for v in pod["volumes"])  # the root filesystem is read-only; /tmp is not
    (c,) = pod["containers"]
    assert c["image"] == SETTINGS.runtime_image and c["command"] == ["vif-router"]
    assert c["args"] == ["--service", "team-a/chat-replicas", "--service-port", "http", "--strategy", "least-load",
                         "--port", "8000", "--model-name", "smollm2", "--host", "0.0.0.0", "--metrics-port", "9090",
                         "--max-wait", "120", "--first-byte-timeout", "300", "--idle-timeout", "60",
                         "--max-pending", "64", "--max-body-bytes", str(4 << 20)]  # fmt: skip
    assert "--api-keys-file" not in c["args"]  # the model has no API keys
    assert c["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert c["securityContext"] == container_security_context()
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}  # held requests need it in
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["resources"]["limits"]["memory"] and "nvidia.com/gpu" not in c["resources"]["limits"]


def test_kv_aware_replicas_publish_their_kv_events_for_the_router() -> None:
    def containers(strategy: str) -> tuple[dict[str, Any], dict[str, Any]]:
        objs = children({**MODEL, "routing": {"strategy": strategy}})
        pods = (objs["Deployment", name]["spec"]["template"]["spec"] for name in ("chat", "chat-router"))
        runtime, router = (pod["containers"][0] for pod in pods)
        return runtime, router

    runtime, router = containers("kv-aware")
    config = runtime["args"][runtime["args"].index("--kv-events-config") + 1]
    assert json.loads(config) == {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": "tcp://*:5557"}
    assert {"name": "kv-events", "containerPort": 5557, "protocol": "TCP"} in runtime["ports"]
    assert router["args"][router["args"].index("--strategy") + 1] == "kv-aware"
    assert router["args"][router["args"].index("--kv-events-port") + 1] == "5557"
    runtime, router = containers("prefix-hash")
    assert "--kv-events-config" not in runtime["args"] and "--kv-events-port" not in router["args"]
    assert [p["name"] for p in runtime["ports"]] == ["http", "metrics"]


def test_the_router_checks_the_models_api_keys() -> None:
    spec = {**ROUTED, "apiKeySecret": {"name": "keys", "key": "api-keys"}}
    pod = children(spec)["Deployment", "chat-router"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][-2:] == ["--api-keys-file", "/etc/vif-api-keys/keys"]
    keys = {"name": "api-keys", "secret": {"secretName": "keys", "items": [{"key": "api-keys", "path": "keys"}]}}
    assert keys in pod["volumes"]  # mounted as the runtime's, so a rotated key reaches the router live
    assert {"name": "api-keys", "mountPath": "/etc/vif-api-keys", "readOnly": True} in c["volumeMounts"]


def test_the_routers_held_bodies_fit_half_its_memory_limit() -> None:
    from vif.runtime.shared.api_keys import MAX_BODY_BYTES

    assert ROUTER_MAX_BODY_BYTES == MAX_BODY_BYTES  # the runtime's: the router holds no body the runtime refuses
    assert parse_quantity(ROUTER_MEMORY_LIMIT) // 2 >= ROUTER_MAX_HELD * ROUTER_MAX_BODY_BYTES


def test_the_hold_outlasts_a_cold_start_and_is_the_models_to_set() -> None:
    def max_wait(spec: dict[str, Any]) -> str:
        args = children(spec)["Deployment", "chat-router"]["spec"]["template"]["spec"]["containers"][0]["args"]
        return args[args.index("--max-wait") + 1]

    assert max_wait(MODEL) == "120"  # the router's own default, 30 s, is shorter than a CPU replica's cold start
    assert max_wait({**MODEL, "routing": {"maxWaitSeconds": 600}}) == "600"


def test_the_replica_timeouts_are_the_models_to_set() -> None:
    routing = {"firstByteTimeoutSeconds": 900, "idleTimeoutSeconds": 20}
    args = children({**MODEL, "routing": routing})["Deployment", "chat-router"]["spec"]["template"]["spec"]
    flags = args["containers"][0]["args"]
    assert flags[flags.index("--first-byte-timeout") + 1] == "900"
    assert flags[flags.index("--idle-timeout") + 1] == "20"


def test_session_affinity_is_the_models_to_turn_on() -> None:
    def args(routing: dict[str, Any]) -> list[str]:
        return children({**MODEL, "routing": routing})["Deployment", "chat-router"]["spec"]["template"]["spec"][
            "containers"
        ][0]["args"]

    assert "--session-affinity" not in args({})
    assert "--session-affinity" in args({"sessionAffinity": True})


def test_router_image_and_pull_secrets_follow_the_model() -> None:
    spec = {**ROUTED, "image": "registry.local/vif-runtime:other", "imagePullSecrets": ["regcred"]}
    pod = children(spec)["Deployment", "chat-router"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.local/vif-runtime:other"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_router_may_only_read_endpointslices() -> None:
    objs = children(ROUTED)
    assert objs["Role", "chat-router"]["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    binding = objs["RoleBinding", "chat-router"]
    assert binding["metadata"]["namespace"] == "team-a"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "chat-router"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "chat-router", "namespace": "team-a"}]


def test_every_child_kind_is_known_to_the_api_client() -> None:
    assert {kind for kind, _ in children(ROUTED)} <= set(OWNED_KINDS) <= set(KINDS)


# Reconcile against the in-memory API.

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}


def watched(cluster: Cluster, api: FakeKubeAPI) -> None:
    for (kind, _, _), obj in api.objects.items():
        if kind != "InferenceModel":
            cluster.children.saw(kind, obj, deleted=False)


def names(api: FakeKubeAPI) -> set[tuple[str, str]]:
    return {(kind, name) for kind, _, name in api.objects}


def router_children_in(api: FakeKubeAPI) -> set[tuple[str, str]]:
    return {(kind, name) for kind, name in names(api) if name in ("chat-router", "chat-replicas")}


def test_switching_strategies_creates_and_prunes_the_router() -> None:
    cluster, api = fake_cluster()
    body = model_body("chat", {**SPEC, "routing": {"strategy": "none"}})
    first = reconcile(body, cluster, SETTINGS)
    assert first.failure is None and router_children_in(api) == set()
    assert api.objects["Service", "team", "chat"]["spec"]["selector"] == selector("chat")
    watched(cluster, api)

    body["spec"] = {**SPEC, "routing": {"strategy": "prefix-hash"}}
    routed = reconcile(body, cluster, SETTINGS)
    assert routed.failure is None and routed.pruned == ()
    assert router_children_in(api) == ROUTER_CHILDREN
    assert api.objects["Service", "team", "chat"]["spec"]["selector"] == router_selector("chat")
    assert routed.status["endpoint"] == first.status["endpoint"] == "http://chat.team.svc.cluster.local:80/v1"
    watched(cluster, api)
    api.calls.clear()
    assert reconcile(body, cluster, SETTINGS).failure is None and api.calls == []  # converged: no request

    body["spec"] = {**SPEC, "routing": {"strategy": "none"}}
    back = reconcile(body, cluster, SETTINGS)
    assert back.failure is None
    assert set(back.pruned) == {f"{kind}/{name}" for kind, name in ROUTER_CHILDREN}
    assert router_children_in(api) == set()
    assert api.objects["Service", "team", "chat"]["spec"]["selector"] == selector("chat")
    # the front Service was switched back before the router went away
    writes = api.writes()
    assert writes.index(("APPLY", "Service", "chat")) < writes.index(("DELETE", "Deployment", "chat-router"))


def test_status_follows_the_runtime_deployment_not_the_routers() -> None:
    cluster, api = fake_cluster()
    body = model_body("chat", {**SPEC, "replicas": 3, "routing": {"replicas": 1}})
    api.add({"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "chat-router", "namespace": "team", "labels": {MODEL_LABEL: "chat"},
                          "ownerReferences": [{"controller": True, "uid": "model-uid"}]},
             "spec": {}, "status": {"replicas": 1, "readyReplicas": 1}})  # fmt: skip
    outcome = reconcile(body, cluster, SETTINGS)
    assert outcome.failure is None
    ready = outcome.status["conditions"][0]
    assert ready["type"] == "Ready" and ready["status"] == "False"
    assert api.objects["Deployment", "team", "chat"]["spec"]["replicas"] == 3


def test_a_router_name_taken_by_another_object_is_a_conflict() -> None:
    cluster, api = fake_cluster()
    api.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chat-router", "namespace": "team"},
             "spec": {}})  # fmt: skip
    outcome = reconcile(model_body("chat", {**SPEC, "routing": {}}), cluster, SETTINGS)
    assert outcome.failure is not None and outcome.failure[0] == "NameConflict"
    assert "Deployment/chat-router" in outcome.failure[1]
    assert api.writes() == []


def test_router_replicas_spread_and_drain_one_at_a_time() -> None:
    spec = {**ROUTED, "tolerations": [{"key": "gpu", "operator": "Exists"}], "priorityClassName": "serving"}
    spec |= {"nodeSelector": {"accel": "l4"}}
    objs = children(spec)
    pod = objs["Deployment", "chat-router"]["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}] and pod["priorityClassName"] == "serving"
    assert "nodeSelector" not in pod and "affinity" not in pod  # accelerators are the replicas' concern
    [spread] = pod["topologySpreadConstraints"]
    assert (
        spread["labelSelector"]["matchLabels"] == objs["Deployment", "chat-router"]["spec"]["selector"]["matchLabels"]
    )
    pdb = objs["PodDisruptionBudget", "chat-router"]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": spread["labelSelector"]}


def test_one_router_replica_has_no_pdb_and_no_spread() -> None:
    objs = children({**MODEL, "routing": {"replicas": 1}})
    assert ("PodDisruptionBudget", "chat-router") not in objs
    assert "topologySpreadConstraints" not in objs["Deployment", "chat-router"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("router_ready", "reason"),
    [(None, "RouterNotReady"), (0, "RouterNotReady"), (1, "ReplicasReady")],
)
def test_a_routed_model_is_ready_only_with_a_ready_router(router_ready: int | None, reason: str) -> None:
    ref = ref_of(ROUTED)
    replicas = {"metadata": {"generation": 1}, "spec": {"replicas": 1},
                "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}}  # fmt: skip
    router = None if router_ready is None else {"spec": {"replicas": 2}, "status": {"readyReplicas": router_ready}}
    ready = build_status(ref, replicas, 1, [], router)["conditions"][0]
    assert (ready["type"], ready["reason"], ready["status"]) == ("Ready", reason, str(reason == "ReplicasReady"))
    unrouted = build_status(ref_of(PLAIN), replicas, 1, [])["conditions"][0]
    assert unrouted["status"] == "True"  # without a router, no router is consulted


def test_at_zero_a_model_that_wakes_on_requests_is_ready() -> None:
    scaled = {"metadata": {"generation": 1}, "spec": {"replicas": 0}, "status": {"observedGeneration": 1}}
    router = {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    autoscaling = {"minReplicas": 0, "maxReplicas": 3}
    woken = build_status(ref_of({**ROUTED, "autoscaling": autoscaling}), scaled, 1, [], router)["conditions"][0]
    assert (woken["status"], woken["reason"]) == ("True", "ScaledToZero")
    without_router = build_status(ref_of({**PLAIN, "autoscaling": autoscaling}), scaled, 1, [])["conditions"][0]
    assert (without_router["status"], without_router["reason"]) == ("False", "ScaledToZero")  # nothing would wake it
    router_down = {"spec": {"replicas": 1}, "status": {"readyReplicas": 0}}
    held = build_status(ref_of({**ROUTED, "autoscaling": autoscaling}), scaled, 1, [], router_down)["conditions"][0]
    assert held["status"] == "False"
