"""The pod template proves itself: the Deployment the operator wrote for the default CPU model, run as a
local process (image paths mapped to the checkout, the ConfigMap written where it would be mounted), serves
the three protocols on the real engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.pods import PodAsProcess, mounted_configmap, running

from .conftest import OperatorProcess, apply_model, get, model_manifest, wait_for

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "servedName": "smollm2-135m-instruct"}


@pytest.fixture
def pod(namespace: str, operator_process: OperatorProcess, tmp_path: Path) -> Iterator[tuple[PodAsProcess, str]]:
    apply_model(namespace, model_manifest("smollm2", SPEC))
    deployment = wait_for(lambda: get("deployment", "smollm2", namespace), "the Deployment")
    configmap = get("configmap", mounted_configmap(deployment), namespace)
    runner = PodAsProcess(deployment, configmap, tmp_path)
    with running(runner) as base:
        yield runner, base


def test_pod_template_serves_the_three_protocols(pod: tuple[PodAsProcess, str]) -> None:
    runner, base = pod
    assert runner.env()["VLLM_CPU_KVCACHE_SPACE"] == "1"
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
