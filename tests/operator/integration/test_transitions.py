"""Changes that must keep serving: names the operator does not own, autoscaling hand-offs, refused Deployments."""

from __future__ import annotations

import json

from helpers.pods import mounted_configmap

from .conftest import OperatorProcess, apply_model, condition, get, kubectl, model_manifest, model_with, wait_for

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}


def settled(name: str, namespace: str) -> dict | None:
    """The model once the operator has handled its latest generation."""
    model = get("inferencemodel", name, namespace)
    status = (model or {}).get("status") or {}
    return model if model and status.get("observedGeneration") == model["metadata"]["generation"] else None


def test_an_existing_service_of_the_same_name_is_never_taken_over(
    namespace: str, operator_process: OperatorProcess
) -> None:
    kubectl("create", "service", "clusterip", "chat", "--tcp=80:8080", "-n", namespace)
    before = get("service", "chat", namespace)
    apply_model(namespace, model_manifest("chat", SPEC))
    model = wait_for(lambda: model_with("chat", namespace, "Degraded", "True"), "Degraded")
    degraded = condition(model, "Degraded")
    assert degraded["reason"] == "NameConflict" and "Service/chat" in degraded["message"]
    wait_for(
        lambda: [e for e in json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
                 if e["reason"] == "NameConflict" and e["type"] == "Warning"],
        "a NameConflict warning event",
    )  # fmt: skip
    assert get("deployment", "chat", namespace) is None  # nothing of the model was made either

    kubectl("delete", "im", "chat", "-n", namespace)
    wait_for(lambda: get("inferencemodel", "chat", namespace) is None, "the model deleted")
    after = get("service", "chat", namespace)
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]  # not even touched
    assert not after["metadata"].get("ownerReferences")


def test_autoscaling_on_and_off_keeps_the_replica_count(namespace: str, operator_process: OperatorProcess) -> None:
    apply_model(namespace, model_manifest("scaled", {**SPEC, "replicas": 3}))
    wait_for(
        lambda: (get("inferencemodel", "scaled", namespace).get("status") or {}).get("readyReplicas") == 3, "3 ready"
    )

    autoscaling = {"minReplicas": 1, "maxReplicas": 5, "metric": "cpu", "target": 70}
    apply_model(namespace, model_manifest("scaled", {**SPEC, "replicas": 3, "autoscaling": autoscaling}))
    wait_for(lambda: get("hpa", "scaled", namespace), "the HPA")
    wait_for(lambda: settled("scaled", namespace), "the change handled")
    assert get("deployment", "scaled", namespace)["spec"]["replicas"] == 3
    shown = kubectl("get", "deployment", "scaled", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    fields = json.loads(shown)["metadata"]["managedFields"]
    managers = {m["manager"] for m in fields if "f:replicas" in json.dumps(m.get("fieldsV1"))}
    assert "vif-operator-handover" in managers

    apply_model(namespace, model_manifest("scaled", {**SPEC, "replicas": 3}))
    wait_for(lambda: get("hpa", "scaled", namespace) is None, "the HPA pruned")
    wait_for(lambda: settled("scaled", namespace), "the change handled")
    assert get("deployment", "scaled", namespace)["spec"]["replicas"] == 3
    # Had `replicas` been dropped on the way, the Deployment controller would have scaled the ReplicaSet down to 1
    # (and back): it records every such step as an event.
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    scaled_down = [e["message"] for e in events if e["reason"] == "ScalingReplicaSet" and "down" in e["message"]]
    assert scaled_down == []


def test_a_refused_deployment_leaves_the_running_pods_and_their_config(
    namespace: str, operator_process: OperatorProcess
) -> None:
    apply_model(namespace, model_manifest("steady", SPEC))
    wait_for(lambda: model_with("steady", namespace, "Ready", "True"), "Ready")
    before = get("deployment", "steady", namespace)
    config = mounted_configmap(before)
    text = get("configmap", config, namespace)["data"]["model_config.json"]

    refused = {
        **SPEC,
        "engine": {"maxModelLen": 1024},
        "podAnnotations": {"prometheus.io/not a valid key": "x"},
    }  # allowed by policy, refused by the API server
    apply_model(namespace, model_manifest("steady", refused))
    model = wait_for(lambda: model_with("steady", namespace, "Degraded", "True"), "Degraded")
    assert condition(model, "Degraded")["reason"] == "ApplyFailed"
    after = get("deployment", "steady", namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert mounted_configmap(after) == config
    assert get("configmap", config, namespace)["data"]["model_config.json"] == text

    apply_model(namespace, model_manifest("steady", {**SPEC, "engine": {"maxModelLen": 1024}}))
    wait_for(lambda: mounted_configmap(get("deployment", "steady", namespace)) != config, "the fixed spec rolled out")
    wait_for(lambda: model_with("steady", namespace, "Ready", "True"), "Ready again")
    wait_for(lambda: get("configmap", config, namespace) is None, "the old ConfigMap pruned after the rollout")
