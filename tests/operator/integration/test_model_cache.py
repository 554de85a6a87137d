"""Models with `model.cache` on the local plane, with the real engine: the hub is olah (a real Hugging
Face-compatible server), the S3 store moto (a real S3-compatible server), the claim binds to a hostPath volume, and
the pods run here with their init container (tests/helpers/kubelet.py). Two replicas and a replaced pod: the model
is downloaded once, and every replica answers from the cache; a failed download is reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from helpers.cluster import get, kubectl, wait_for
from helpers.hub_server import HubServer, model_files, running_hub
from helpers.kubelet import operating
from helpers.runtime_process import MODEL
from helpers.s3_server import CREDENTIALS, S3Server, running_s3

from .conftest import apply_model, condition, events_of, model_manifest, model_with

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
    with operating(namespace, tmp_path, "--hub-endpoint", hub.url) as kubelet:
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

        # status.download: Ready once an engine serves from the cache (kubectl get im's Download column)
        model = wait_for(lambda: downloaded("cached", namespace, "Ready"), "status.download Ready", 60)
        assert model["status"]["download"]["source"] == f"{REPO}@main"
        assert "Ready" in kubectl("get", "im", "cached", "-n", namespace).stdout.splitlines()[1].split()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[S3Server]:
    (tmp_path / "s3-server").mkdir()
    with running_s3(tmp_path / "s3-server") as server:
        server.upload("models", "smollm2", model_files())
        yield server


def test_an_s3_model_is_downloaded_and_answers(namespace: str, tmp_path: Path, store: S3Server, volume: str) -> None:
    """model.s3 on moto (a real S3-compatible server) through an allowed endpoint, with the keys from the model's
    Secret: the fetch signs its requests with them."""
    with operating(namespace, tmp_path, "--allowed-s3-endpoint", store.url) as kubelet:
        keys = [f"--from-literal={k}={CREDENTIALS[k]}" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
        kubectl("create", "secret", "generic", "s3-keys", "-n", namespace, *keys)
        source = {"uri": "s3://models/smollm2", "endpoint": store.url, "credentialsSecret": "s3-keys"}
        s3 = {**spec(volume), "replicas": 1, "model": {"s3": source, "cache": spec(volume)["model"]["cache"]}}
        apply_model(namespace, model_manifest("from-s3", s3))

        def serving() -> bool:
            running = kubelet.running()
            return len(running) == 1 and all(c.answers_ready() for c in running)

        # one replica: sharing the download between replicas is the Hugging Face test's, and the source's own
        # (tests/runtime/sources/test_s3_download.py)
        wait_for(serving, "the replica answering", SETTLE)
        assert len(store.object_requests("models", "smollm2")) == len(model_files())
        for container in kubelet.running():
            body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
            answer = httpx.post(f"{container.url}/v1/chat/completions", json=body, timeout=120)
            assert answer.status_code == 200, answer.text
        model = wait_for(lambda: downloaded("from-s3", namespace, "Ready"), "status.download Ready", 60)
        assert model["status"]["download"]["source"] == "s3://models/smollm2"
        assert kubelet.error is None, repr(kubelet.error)


def downloaded(name: str, namespace: str, phase: str) -> dict | None:
    model = get("inferencemodel", name, namespace)
    download = ((model or {}).get("status") or {}).get("download") or {}
    return model if download.get("phase") == phase else None


@pytest.mark.parametrize(
    ("repo", "revision", "corrupt", "cause"),
    [
        ("vif-test/absent", "main", False, "no such repository"),
        (REPO, "v9", False, "no such re"),  # olah's mirror says repository where the Hub says revision
        ("vif-test/corrupted", "main", True, "sha256 mismatch"),
    ],
    ids=["missing-repository", "missing-revision", "corrupted-weights"],
)
def test_a_failed_download_is_degraded_with_its_cause_and_an_event(
    namespace: str, tmp_path: Path, hub: HubServer, volume: str, repo: str, revision: str, corrupt: bool, cause: str
) -> None:
    """The fetch's failure, read from the pod, names its cause within seconds; no engine starts on a part of it."""
    if corrupt:
        hub.add_repo(repo, model_files(), corrupt=frozenset({"model.safetensors"}))
    with operating(namespace, tmp_path, "--hub-endpoint", hub.url) as kubelet:
        failing = spec(volume)
        failing["model"]["huggingFace"].update(id=repo, revision=revision)
        failing["replicas"] = 1
        apply_model(namespace, model_manifest("failing", failing))
        # bounded by the fetch's 30 s hold on its failure, which the operator asks for every 5 s
        model = wait_for(lambda: model_with("failing", namespace, "Degraded", "True"), "Degraded=True", 120)
        degraded = condition(model, "Degraded")
        assert degraded is not None and degraded["reason"] == "DownloadFailed"
        assert f"{repo}@{revision}" in degraded["message"] and cause in degraded["message"], degraded["message"]
        assert model["status"]["download"]["summary"].startswith(f"Failed: {repo}@{revision}")
        events = wait_for(lambda: events_of("failing", namespace, "DownloadFailed"), "a DownloadFailed event")
        assert events[0]["type"] == "Warning"
        assert kubelet.error is None, repr(kubelet.error)
        if not corrupt:
            return
        # weights fetched whole but wrong: the pod ends when the fetch does (its hold over), and the engine's
        # container never ran on them
        ended = wait_for(lambda: all(c.proc.poll() for c in kubelet.containers.values()), "the pod's fetch ending")
        assert ended and kubelet.containers
        for container in kubelet.containers.values():
            assert f"serving {MODEL} from" not in container.runner.log.read_text(errors="replace"), "an engine started"
