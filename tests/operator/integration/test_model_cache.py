"""A Hugging Face model with `model.cache` on the local plane, with the real engine: the hub is olah (a real
Hugging Face-compatible server), the claim binds to a hostPath volume, and the pods run here with their init
container (tests/helpers/kubelet.py). Two replicas and a replaced pod: the model is downloaded once, and every
replica answers from the cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from helpers.cluster import get, kubectl, wait_for
from helpers.hub_server import HubServer, model_files, running_hub
from helpers.kubelet import StandInKubelet, routed_pod_ips
from helpers.operator_process import OperatorProcess
from helpers.runtime_process import MODEL

from .conftest import apply_model, model_manifest

pytestmark = pytest.mark.servers
REPO = "vif-test/cached-smollm2"
SETTLE = 600  # bounded, not timed: two engines load at once on two cores


def spec(storage_class: str) -> dict:
    return {
        "model": {"huggingFace": {"id": REPO}, "cache": {"size": "1Gi", "storageClassName": storage_class,
                                                          "accessMode": "ReadWriteOnce"}},
        "servedName": MODEL,
        "engine": {"maxModelLen": 2048, "extraArgs": ["--max-num-seqs", "8"]},
        "replicas": 2,
        "routing": {"strategy": "none"},
    }  # fmt: skip


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    (tmp_path / "hub-server").mkdir()
    with running_hub(tmp_path / "hub-server") as server:
        server.add_repo(REPO, model_files())
        yield server


@pytest.fixture
def volume(namespace: str, tmp_path: Path) -> Iterator[str]:
    """A hostPath PersistentVolume of a storage class of the test's own, for the model's claim to bind to; its
    class name."""
    folder = tmp_path / "volume"
    folder.mkdir()
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": namespace},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": namespace,
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(folder)}},
    }  # fmt: skip
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pv))
    yield namespace
    kubectl("delete", "pv", namespace, "--wait=false", check=False)


def test_two_replicas_and_a_replaced_pod_share_one_download(
    namespace: str, tmp_path: Path, hub: HubServer, volume: str
) -> None:
    operator = OperatorProcess(namespace, tmp_path, ("--hub-endpoint", hub.url))
    operator.start()
    try:
        pods = StandInKubelet(namespace, "app.kubernetes.io/name=vif-runtime", tmp_path / "pods")
        with routed_pod_ips(), pods as kubelet:
            apply_model(namespace, model_manifest("cached", spec(volume)))

            def serving(count: int) -> bool:
                running = kubelet.running()
                return len(running) == count and all(c.answers_ready() for c in running)

            wait_for(lambda: serving(2), "both replicas answering", SETTLE)
            assert len(hub.file_requests(REPO)) == len(model_files())  # one download for both
            claim = get("persistentvolumeclaim", "cached-model-cache", namespace)
            assert claim is not None and claim["spec"]["volumeName"] == volume

            before = {c.name for c in kubelet.running()}
            first = kubelet.running()[0]
            kubectl("delete", "pod", first.name, "-n", namespace, "--wait=false")
            wait_for(lambda: len(kubelet.containers) == 3 and serving(2), "the replaced pod answering", SETTLE)
            assert len(hub.file_requests(REPO)) == len(model_files())  # the new pod loaded from the cache
            replacement = next(c for c in kubelet.running() if c.name not in before)
            for container in kubelet.running():
                body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
                answer = httpx.post(f"{container.url}/v1/chat/completions", json=body, timeout=120)
                assert answer.status_code == 200, answer.text
            assert "in the cache" in replacement.runner.log.read_text(errors="replace")
            assert kubelet.error is None, repr(kubelet.error)
    finally:
        operator.kill()
