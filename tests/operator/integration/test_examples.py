"""Every example InferenceModel in docs/examples/inferencemodels applies and gets the children it promises."""

from __future__ import annotations

import json

from .conftest import REPO, OperatorProcess, get, kubectl, model_with, wait_for

EXAMPLES = REPO / "docs" / "examples" / "inferencemodels"


def apply_example(name: str, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / name))


def container(name: str, namespace: str) -> dict:
    deployment = wait_for(lambda: get("deployment", name, namespace), f"the Deployment of {name}")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_examples(namespace: str, operator_process: OperatorProcess) -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == [
        "api-key.yaml", "autoscaling.yaml", "cpu-smollm2.yaml", "gpu-tensor-parallel.yaml", "tenants.yaml",
    ]  # fmt: skip
    for example in EXAMPLES.glob("*.yaml"):
        apply_example(example.name, namespace)

    assert container("smollm2", namespace)["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    wait_for(lambda: model_with("smollm2", namespace, "Ready", "True"), "the CPU example Ready")

    gpu = container("qwen-7b", namespace)
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} in gpu["env"]

    hpa = wait_for(lambda: get("hpa", "smollm2-autoscaled", namespace), "the example's HPA")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)

    private = container("smollm2-private", namespace)
    assert private["args"][private["args"].index("--api-keys-file") + 1] == "/etc/vif-api-keys/keys"
    volumes = {
        v["name"]: v for v in get("deployment", "smollm2-private", namespace)["spec"]["template"]["spec"]["volumes"]
    }
    keys = volumes["api-keys"]["secret"]  # mounted, so a rotated key reaches the running pods (docs/live-config.md)
    assert (keys["secretName"], keys["items"]) == ("smollm2-api-keys", [{"key": "keys", "path": "keys"}])
    assert get("secret", "smollm2-api-keys", namespace) is not None

    router = container("smollm2-shared-router", namespace)
    assert router["args"][router["args"].index("--tenants-file") + 1] == "/etc/vif-tenants/tenants.json"
    assert router["args"][router["args"].index("--router-replicas") + 1] == "2"  # the operator has no Redis here
    tenants = wait_for(lambda: get("configmap", "smollm2-shared-tenants", namespace), "the tenants' ConfigMap")
    assert [t["name"] for t in json.loads(tenants["data"]["tenants.json"])["tenants"]] == ["search", "batch"]
