"""The pod template proves itself: the Deployment the operator wrote for the default CPU model, run as a
local process (image paths mapped to the checkout, the ConfigMap written where it would be mounted), serves
the three protocols on the real engine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import REPO, OperatorProcess, apply_model, get, model_manifest, wait_for

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "servedName": "smollm2-135m-instruct"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PodAsProcess:
    """Runs a pod template's container here: same command, args and env, with paths and the port mapped."""

    def __init__(self, deployment: dict, configmap: dict, root: Path) -> None:
        self.container = deployment["spec"]["template"]["spec"]["containers"][0]
        self.paths = {"/etc/vif": str(root / "etc-vif"), "/models": str(REPO / "models")}
        config_dir = root / "etc-vif"
        config_dir.mkdir(parents=True)
        for key, text in configmap["data"].items():
            (config_dir / key).write_text(self.localize(text))
        self.port = free_port()
        self.log = root / "pod.log"

    def localize(self, text: str) -> str:
        for image_path, local in self.paths.items():
            text = text.replace(image_path, local)
        return text

    def command(self) -> list[str]:
        binary = str(Path(sys.executable).parent / self.container["command"][0])
        args = [self.localize(a) for a in self.container["args"]]
        args[args.index("--host") + 1] = "127.0.0.1"
        args[args.index("--port") + 1] = str(self.port)
        return [binary, *self.container["command"][1:], *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in self.container.get("env", []):
            assert "value" in var, f"{var['name']} comes from a Secret: not part of the default CPU model"
            env[var["name"]] = var["value"]
        return env

    def run(self) -> subprocess.Popen[bytes]:
        out = self.log.open("wb")
        return subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
        )


@pytest.fixture
def pod(namespace: str, operator_process: OperatorProcess, tmp_path: Path) -> Iterator[tuple[PodAsProcess, str]]:
    apply_model(namespace, model_manifest("smollm2", SPEC))
    deployment = wait_for(lambda: get("deployment", "smollm2", namespace), "the Deployment")
    configmap = get("configmap", "smollm2-config", namespace)
    runner = PodAsProcess(deployment, configmap, tmp_path)
    proc = runner.run()
    base = f"http://127.0.0.1:{runner.port}"
    readiness = runner.container["readinessProbe"]["httpGet"]["path"]

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the pod's command exited {proc.returncode}: {runner.log.read_text()[-3000:]}")
        try:
            return httpx.get(base + readiness, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, f"the pod's readiness path {readiness}", timeout=600)
        yield runner, base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


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
