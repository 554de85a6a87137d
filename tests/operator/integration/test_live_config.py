"""Live configuration on the local plane, with the real engine and the real operator (docs/live-config.md): a rotated
API key and a new chat template reach the running replica through its mounted Secret and ConfigMap, with no pod
restarted; a broken template is refused by the runtime, the one in force keeps serving, and the model is Degraded
(LiveConfigRefused) until the template is fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from helpers.cluster import get, put, wait_for
from helpers.kubelet import Container, StandInKubelet, operating
from helpers.runtime_process import MODEL

from .conftest import apply_model, condition, model_manifest, model_with

SETTLE = 600  # bounded, not timed: the engine loads on a busy machine
LIVE = 60  # the bound for a rotated key
TEMPLATE = "{% for m in messages %}<{{ m.role }}|{{ m.content }}>{% endfor %}"
SPEC = {
    "model": {"path": "/models/SmolLM2-135M-Instruct"},
    "servedName": MODEL,
    "engine": {"maxModelLen": 2048, "extraArgs": ["--max-num-seqs", "4"]},
    "routing": {"strategy": "none"},
    "apiKeySecret": {"name": "keys", "key": "api-keys"},
    "serving": {"chatTemplate": {"name": "templates", "key": "chat.jinja"}},
}


def serving(kubelet: StandInKubelet) -> Container | None:
    running = kubelet.running()
    return running[0] if len(running) == 1 and running[0].answers_ready() else None


def status(container: Container, key: str) -> int:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{container.url}/v1/chat/completions", json=body, headers=headers, timeout=120).status_code


def rendered(container: Container, key: str = "k2") -> str:
    """The prompt the replica's chat template makes of one message."""
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{container.url}/tokenize", json=body, headers=headers, timeout=60)
    answer.raise_for_status()
    detokenized = httpx.post(f"{container.url}/detokenize", json={"model": MODEL, "tokens": answer.json()["tokens"]},
                             headers=headers, timeout=60)  # fmt: skip
    return str(detokenized.json()["prompt"])


def live_config(container: Container) -> dict[str, Any]:
    return dict(httpx.get(f"{container.url}/live-config", timeout=10).json())


def test_a_rotated_key_and_a_new_template_reach_the_running_pod_and_a_broken_template_is_refused(
    namespace: str, tmp_path: Path
) -> None:
    put(namespace, "Secret", "keys", {"api-keys": "k1"})
    put(namespace, "ConfigMap", "templates", {"chat.jinja": TEMPLATE})
    with operating(namespace, tmp_path) as kubelet:
        apply_model(namespace, model_manifest("live", SPEC))
        pod = wait_for(lambda: serving(kubelet), "the replica answering", SETTLE)
        generation = get("deployment", "live", namespace)["metadata"]["generation"]
        assert (status(pod, "k1"), status(pod, "k2")) == (200, 401)
        assert rendered(pod, "k1").startswith("<user|hi>")

        put(namespace, "Secret", "keys", {"api-keys": "k2"})
        wait_for(lambda: status(pod, "k2") == 200, "the rotated key accepted", LIVE)
        assert status(pod, "k1") == 401
        put(namespace, "ConfigMap", "templates", {"chat.jinja": TEMPLATE.replace("|", " says ")})
        wait_for(lambda: rendered(pod).startswith("<user says hi>"), "the new template in force", LIVE)

        version = live_config(pod)["version"]
        put(namespace, "ConfigMap", "templates", {"chat.jinja": "{% for m in messages %}"})
        refusal = wait_for(lambda: live_config(pod)["refused"], "the broken template refused", LIVE)
        assert "chat template" in refusal["error"] and live_config(pod)["version"] == version
        assert rendered(pod).startswith("<user says hi>") and status(pod, "k2") == 200
        assert "live configuration" in (pod.runner.log.read_text()) and "refused" in pod.runner.log.read_text()
        # ... and the model says so, until the template is fixed
        degraded = wait_for(lambda: model_with("live", namespace, "Degraded", "True"), "Degraded", LIVE)
        assert condition(degraded, "Degraded")["reason"] == "LiveConfigRefused"  # type: ignore[index]
        assert "chat template" in condition(degraded, "Degraded")["message"]  # type: ignore[index]
        assert condition(degraded, "Ready")["status"] == "True"  # type: ignore[index]  # it still serves
        put(namespace, "ConfigMap", "templates", {"chat.jinja": TEMPLATE})
        wait_for(lambda: model_with("live", namespace, "Degraded", "False"), "the refusal cleared", LIVE)
        assert rendered(pod).startswith("<user|hi>")

        # the same process all along, and no rollout: the Deployment's spec never changed
        assert kubelet.running() == [pod] and pod.proc.poll() is None
        assert get("deployment", "live", namespace)["metadata"]["generation"] == generation
