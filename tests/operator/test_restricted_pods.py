"""The model's pods meet the `restricted` Pod Security Standard, and can write only where it is bounded."""

from __future__ import annotations

from typing import Any

from helpers.model_children import own_children
from vif.operator.builders.security import RUNTIME_UID, cache_env

CPU_MODEL = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}
HF_MODEL = {"model": {"huggingFace": {"id": "org/model"}}, "resources": {"gpu": 1, "memory": "32Gi"}}


def children(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return own_children(spec)


def pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return children(spec)["Deployment"]["spec"]["template"]["spec"]


def test_restricted_security_contexts() -> None:
    pod = pod_spec(CPU_MODEL)
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsUser"] == context["runAsGroup"] == context["fsGroup"] == RUNTIME_UID == 10001
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert pod["automountServiceAccountToken"] is False


def test_own_service_account_without_a_token() -> None:
    objs = children(CPU_MODEL)
    account = objs["ServiceAccount"]
    assert account["metadata"]["name"] == "chat" and account["automountServiceAccountToken"] is False
    assert account["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert objs["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "chat"
    assert next(iter(objs)) == "ServiceAccount"  # applied before the pods that name it


def test_every_emptydir_is_bounded() -> None:
    for spec in (CPU_MODEL, HF_MODEL):
        for volume in pod_spec(spec)["volumes"]:
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), volume


def test_shared_memory_follows_the_memory_resource() -> None:
    def shm(spec: dict[str, Any]) -> dict[str, Any]:
        return next(v["emptyDir"] for v in pod_spec(spec)["volumes"] if v["name"] == "dshm")

    assert shm(CPU_MODEL) == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert shm(HF_MODEL) == {"medium": "Memory", "sizeLimit": "32Gi"}


def test_caches_point_into_writable_mounts() -> None:
    """With a read-only root, every cache path in the env lies under a writable emptyDir mount."""
    for spec in (CPU_MODEL, HF_MODEL):
        pod = pod_spec(spec)
        empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        (container,) = pod["containers"]
        writable = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty]
        assert {"/tmp", "/home/vif", "/dev/shm"} <= set(writable)
        env = {e["name"]: e.get("value") for e in container["env"]}
        paths = [env[name] for name in (*(e["name"] for e in cache_env()), "HF_HOME") if name in env]
        assert len(paths) >= len(cache_env())
        for path in paths:
            assert any(path == m or path.startswith(m + "/") for m in writable), path
    assert {e["name"] for e in cache_env()} >= {"HOME", "XDG_CACHE_HOME", "VLLM_CACHE_ROOT"}
