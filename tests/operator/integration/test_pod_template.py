"""The pod template proves itself: the Deployment the operator wrote for the default CPU model, run as a
local process (image paths mapped to the checkout, the ConfigMap written where it would be mounted), serves
the three protocols on the real engine; and the API server keeps its graceful-shutdown settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.pods import PodAsProcess, cluster_volume_files, running

from .conftest import OperatorProcess, apply_model, get, kubectl, model_manifest, wait_for

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "servedName": "smollm2-135m-instruct"}


@pytest.fixture
def pod(namespace: str, operator_process: OperatorProcess, tmp_path: Path) -> Iterator[tuple[PodAsProcess, str]]:
    apply_model(namespace, model_manifest("smollm2", SPEC))
    deployment = wait_for(lambda: get("deployment", "smollm2", namespace), "the Deployment")
    runner = PodAsProcess(deployment, cluster_volume_files(deployment, namespace), tmp_path)
    with running(runner) as base:
        yield runner, base


def pods_of(model: str, namespace: str) -> list[dict]:
    listed = kubectl("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={model}", "-o", "json")
    return json.loads(listed.stdout)["items"]


def test_pod_template_stops_gracefully(namespace: str, operator_process: OperatorProcess) -> None:
    """The preStop sleep action (Kubernetes 1.30+) and the grace period survive the API server's validation and
    field dropping, in the Deployment and in the pods its ReplicaSet makes."""
    apply_model(namespace, model_manifest("graceful", {**SPEC, "terminationGracePeriodSeconds": 90}))
    deployment = wait_for(lambda: get("deployment", "graceful", namespace), "the Deployment")
    pods = wait_for(lambda: pods_of("graceful", namespace), "a pod of the model")
    for template in (deployment["spec"]["template"]["spec"], pods[0]["spec"]):
        (container,) = template["containers"]
        assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
        assert template["terminationGracePeriodSeconds"] == 90
        args = container["args"]
        assert args[args.index("--shutdown-timeout") + 1] == "70" and args[args.index("--drain-seconds") + 1] == "5"
        assert container["readinessProbe"]["timeoutSeconds"] == container["livenessProbe"]["timeoutSeconds"] == 5


def test_pod_template_serves_the_three_protocols(pod: tuple[PodAsProcess, str]) -> None:
    runner, base = pod
    # No KV cache size in the pod: the runtime sizes it from the memory free to it.
    assert "VLLM_CPU_KVCACHE_SPACE" not in {e["name"] for e in runner.container["env"]}
    liveness = runner.container["livenessProbe"]["httpGet"]["path"]
    with httpx.Client(base_url=base, timeout=120) as client:
        assert client.get(liveness).status_code == 200
        question = [{"role": "user", "content": "What is the capital of France?"}]
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "smollm2-135m-instruct", "messages": question, "temperature": 0, "max_tokens": 20},
        )
        assert "Paris" in chat.json()["choices"][0]["message"]["content"]
        completion = client.post(
            "/v1/completions",
            json={
                "model": "smollm2-135m-instruct",
                "prompt": "The capital of France is",
                "temperature": 0,
                "max_tokens": 4,
            },
        )
        assert "Paris" in completion.json()["choices"][0]["text"]
        generate = client.post(
            "/generate", json={"prompt": "Name a colour.", "system_info": "Answer in one word.", "max_tokens": 8}
        )
        assert generate.status_code == 200 and generate.json()["object"] == "generate" and generate.json()["output"]
