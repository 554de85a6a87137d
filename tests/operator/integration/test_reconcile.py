"""The operator against a real API server: children, status, updates, drift, scale, autoscaling, deletion."""

from __future__ import annotations

import json

from helpers.pods import mounted_configmap

from .conftest import (
    OperatorProcess,
    apply_model,
    condition,
    events_of,
    get,
    kubectl,
    model_manifest,
    model_with,
    reconciled,
    wait_for,
)

CPU_SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "servedName": "smollm2-135m-instruct"}


def runtime_container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def model_config(namespace: str, deployment: dict) -> dict:
    return json.loads(get("configmap", mounted_configmap(deployment), namespace)["data"]["model_config.json"])


def test_children_status_and_updates(namespace: str, operator_process: OperatorProcess) -> None:
    apply_model(namespace, model_manifest("chat", CPU_SPEC))
    deployment = wait_for(lambda: get("deployment", "chat", namespace), "the Deployment")
    model = get("inferencemodel", "chat", namespace)
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("InferenceModel", "chat", model["metadata"]["uid"])
    container = runtime_container(deployment)
    assert container["image"] == "vif-runtime:test"
    assert container["args"][:4] == ["--config", "/etc/vif/model_config.json", "--model-name", "smollm2-135m-instruct"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    service = get("service", "chat", namespace)
    assert (
        service["spec"]["ports"][0]["port"] == 80
        and service["spec"]["selector"]["app.kubernetes.io/instance"] == "chat"
    )
    config = model_config(namespace, deployment)
    assert config["smollm2-135m-instruct"]["model_path"] == "/models/SmolLM2-135M-Instruct"
    assert get("configmap", mounted_configmap(deployment), namespace)["immutable"] is True
    assert get("hpa", "chat", namespace) is None and get("pdb", "chat", namespace) is None

    # kwok runs the pods: the Deployment becomes available and the status says so
    ready = wait_for(lambda: model_with("chat", namespace, "Ready", "True"), "Ready=True")
    assert ready["status"]["readyReplicas"] == 1
    assert ready["status"]["endpoint"] == f"http://chat.{namespace}.svc.cluster.local:80/v1"
    assert ready["status"]["observedGeneration"] == ready["metadata"]["generation"]
    printed = kubectl("get", "im", "chat", "-n", namespace).stdout
    assert "smollm2-135m-instruct" in printed and "True" in printed

    # a new max model length: a new ConfigMap, the pods roll (new template hash), the old one goes after the rollout
    old_hash = deployment["spec"]["template"]["metadata"]["annotations"]["inference.vif.dev/config-hash"]
    old_config = mounted_configmap(deployment)
    kubectl("patch", "im", "chat", "-n", namespace, "--type=merge", "-p", '{"spec": {"engine": {"maxModelLen": 1024}}}')
    wait_for(
        lambda: (
            model_config(namespace, get("deployment", "chat", namespace))["smollm2-135m-instruct"].get("max_model_len")
            == 1024
        ),
        "the mounted ConfigMap to carry max_model_len 1024",
    )
    wait_for(lambda: get("configmap", old_config, namespace) is None, "the old ConfigMap pruned after the rollout")
    rolled = wait_for(
        lambda: (
            (d := get("deployment", "chat", namespace))["spec"]["template"]["metadata"]["annotations"][
                "inference.vif.dev/config-hash"
            ]
            != old_hash
            and d
        ),
        "the Deployment's pod template to change",
    )
    assert rolled["metadata"]["generation"] > deployment["metadata"]["generation"]

    # a hand edit of a managed field is reverted
    kubectl("patch", "deployment", "chat", "-n", namespace, "--type=json",
            "-p", '[{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil:latest"}]')  # fmt: skip
    wait_for(
        lambda: runtime_container(get("deployment", "chat", namespace))["image"] == "vif-runtime:test",
        "the edit reverted",
    )

    # kubectl scale goes through the scale subresource; the Deployment and a PDB follow
    kubectl("scale", "im/chat", "-n", namespace, "--replicas=2")
    wait_for(lambda: get("deployment", "chat", namespace)["spec"]["replicas"] == 2, "2 replicas")
    wait_for(lambda: get("pdb", "chat", namespace), "the PodDisruptionBudget")
    wait_for(
        lambda: get("inferencemodel", "chat", namespace)["status"].get("readyReplicas") == 2,
        "2 ready replicas in status",
    )

    # autoscaling on: an HPA; off again: the HPA is pruned
    kubectl("patch", "im", "chat", "-n", namespace, "--type=merge",
            "-p", '{"spec": {"autoscaling": {"minReplicas": 1, "maxReplicas": 4, "metric": "cpu", "target": 70}}}')  # fmt: skip
    hpa = wait_for(lambda: get("hpa", "chat", namespace), "the HPA")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    kubectl(
        "patch", "im", "chat", "-n", namespace, "--type=json", "-p", '[{"op": "remove", "path": "/spec/autoscaling"}]'
    )
    wait_for(lambda: get("hpa", "chat", namespace) is None, "the HPA to be pruned")

    # deleting the model deletes every child (owner references + the garbage collector)
    config = mounted_configmap(get("deployment", "chat", namespace))
    kubectl("delete", "im", "chat", "-n", namespace)
    for kind, name in (("deployment", "chat"), ("service", "chat"), ("configmap", config), ("pdb", "chat")):
        wait_for(lambda kind=kind, name=name: get(kind, name, namespace) is None, f"{kind}/{name} to be deleted")


def test_a_spec_the_policy_refuses_is_degraded_with_an_event(namespace: str, operator_process: OperatorProcess) -> None:
    apply_model(namespace, model_manifest("elsewhere", {**CPU_SPEC, "image": "registry.example/other:1"}))
    model = wait_for(lambda: model_with("elsewhere", namespace, "Degraded", "True"), "Degraded=True")
    degraded = condition(model, "Degraded")
    assert degraded["reason"] == "PolicyViolation" and "registry.example/other:1" in degraded["message"]
    events = wait_for(lambda: events_of("elsewhere", namespace, "PolicyViolation"), "a PolicyViolation event")
    assert events[0]["type"] == "Warning"
    assert get("deployment", "elsewhere", namespace) is None
    assert operator_process.proc is not None and operator_process.proc.poll() is None  # no crash


def test_restart_mid_way_converges_without_duplicates(namespace: str, operator_process: OperatorProcess) -> None:
    apply_model(namespace, model_manifest("first", CPU_SPEC))
    wait_for(lambda: get("deployment", "first", namespace), "the first Deployment")
    operator_process.kill()
    apply_model(namespace, model_manifest("second", {**CPU_SPEC, "replicas": 2}))
    kubectl("patch", "im", "first", "-n", namespace, "--type=merge", "-p", '{"spec": {"replicas": 3}}')
    operator_process.start()
    # Converged, not first signs of progress: each model's status names its current generation, which the
    # operator writes only after applying every child (the router's Deployment comes after the runtime's).
    for name in ("first", "second"):
        wait_for(lambda name=name: reconciled(name, namespace), f"{name}'s status at its current generation")
    assert get("deployment", "first", namespace)["spec"]["replicas"] == 3  # the change missed while down
    selector = "app.kubernetes.io/managed-by=vif-operator"
    # exactly one of each per model: the runtime's and the router's Deployment, the model's and the replicas'
    # Service, the config and the live ConfigMap
    for kind, per_model in (("deployments", 2), ("services", 2), ("configmaps", 2)):
        model_label = "jsonpath={.items[*].metadata.labels.inference\\.vif\\.dev/model}"
        owners = kubectl("get", kind, "-n", namespace, "-l", selector, "-o", model_label).stdout.split()
        assert sorted(owners) == ["first"] * per_model + ["second"] * per_model, (kind, owners)
