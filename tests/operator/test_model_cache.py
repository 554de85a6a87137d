"""spec.model.cache: a Hugging Face model downloaded once into a claim the replicas share, as pure builders (the
local plane runs it: tests/operator/integration/test_model_cache.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from vif.operator.builders import build_children
from vif.operator.model_ref import ModelRef
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec

TOKEN = {"name": "hf", "key": "token"}
CACHED = {"model": {"huggingFace": {"id": "org/Model-1B", "tokenSecret": TOKEN}, "cache": {"size": "20Gi"}}}
LINK = "/models/cache/revisions/org--Model-1B/main"


def children(spec: dict[str, Any], **settings: Any) -> dict[str, dict[str, Any]]:
    ref = ModelRef("chat", "team-a", "uid-1", InferenceModelSpec.model_validate(spec))
    built = build_children(ref, OperatorSettings(**settings), False)
    return {c["kind"]: c for c in built if c["metadata"]["name"] in ("chat", "chat-model-cache")
            or c["metadata"]["name"].startswith("chat-config-")}  # fmt: skip


def pod(spec: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return children(spec, **settings)["Deployment"]["spec"]["template"]["spec"]


def test_the_claim_is_the_models_and_shared() -> None:
    claim = children(CACHED)["PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == "chat-model-cache"
    assert claim["metadata"]["ownerReferences"][0]["uid"] == "uid-1"  # deleted with the model
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "20Gi"}}}
    other = {**CACHED["model"], "cache": {"size": "5Gi", "storageClassName": "fast.nfs", "accessMode": "ReadWriteOnce"}}
    spec = children({"model": other})["PersistentVolumeClaim"]["spec"]
    assert (spec["storageClassName"], spec["accessModes"]) == ("fast.nfs", ["ReadWriteOnce"])
    assert "PersistentVolumeClaim" not in children({"model": {"huggingFace": {"id": "org/Model-1B"}}})


def test_a_shared_claim_is_mounted_and_left_alone() -> None:
    shared = {"model": {**CACHED["model"], "cache": {"claimName": "models"}}}
    assert "PersistentVolumeClaim" not in children(shared)  # the namespace's, not the model's to make or delete
    volumes = {v["name"]: v for v in pod(shared)["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "models"}


def test_the_init_container_downloads_with_the_token_and_the_operators_endpoint() -> None:
    (fetch,) = pod(CACHED, hub_endpoint="http://hub-mirror.infra:8080")["initContainers"]
    assert fetch["command"] == ["vif-runtime", "fetch"]
    assert fetch["args"] == ["org/Model-1B", "--revision", "main", "--cache", "/models/cache", "--link", LINK,
                             "--progress-port", "8000", "--hold-failure", "30"]  # fmt: skip
    assert fetch["env"] == [
        {"name": "HF_ENDPOINT", "value": "http://hub-mirror.infra:8080"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": TOKEN}},
    ]
    assert {"name": "model-cache", "mountPath": "/models/cache"} in fetch["volumeMounts"]
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    assert [e["name"] for e in pod(CACHED)["initContainers"][0]["env"]] == ["HF_TOKEN"]  # huggingface.co


def test_the_engine_reads_the_cache_read_only_and_never_sees_the_token() -> None:
    spec = pod(CACHED)
    (runtime,) = spec["containers"]
    names = {e["name"]: e.get("value") for e in runtime["env"]}
    assert "HF_TOKEN" not in names and "HF_HOME" not in names and names["HF_HUB_OFFLINE"] == "1"
    assert {"name": "model-cache", "mountPath": "/models/cache", "readOnly": True} in runtime["volumeMounts"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "chat-model-cache"}
    assert "hf-cache" not in volumes  # no per-pod download space
    args = runtime["args"]
    assert "/models/cache" in [args[i + 1] for i, a in enumerate(args) if a == "--allowed-root"]


def test_the_config_names_the_revisions_link() -> None:
    model = {**CACHED["model"], "huggingFace": {"id": "org/Model-1B", "revision": "refs/pr/7"}}
    entry = json.loads(children({"model": model})["ConfigMap"]["data"]["model_config.json"])["chat"]
    assert entry["model_path"] == "/models/cache/revisions/org--Model-1B/refs--pr--7"
    assert "model_id" not in entry and "revision" not in entry["engine_args"]  # the fetch resolved it
    (fetch,) = pod({"model": model})["initContainers"]
    assert fetch["args"][fetch["args"].index("--revision") + 1] == "refs/pr/7"


def test_without_a_cache_each_pod_downloads_as_before() -> None:
    spec = pod({"model": {"huggingFace": {"id": "org/Model-1B", "revision": "v1", "tokenSecret": TOKEN}}})
    assert "initContainers" not in spec
    names = [e["name"] for e in spec["containers"][0]["env"]]
    assert "HF_TOKEN" in names and "HF_HOME" in names


@pytest.mark.parametrize("revision", ["a/../b", "../main", "-rf", "x" * 129, "a b"])
def test_a_revision_is_a_name_not_a_path(revision: str) -> None:
    with pytest.raises(ValidationError):
        InferenceModelSpec.model_validate({"model": {"huggingFace": {"id": "org/m", "revision": revision}}})


def test_hugging_face_adapters_keep_the_engines_own_download() -> None:
    """vLLM fetches the adapters at start, with the pod's token: the engine keeps it, and room to download."""
    spec = pod({**CACHED, "adapters": [{"name": "chef", "huggingFace": {"id": "org/chef-lora"}}]})
    names = [e["name"] for e in spec["containers"][0]["env"]]
    assert "HF_TOKEN" in names and "HF_HUB_OFFLINE" not in names
    assert "hf-cache" in {v["name"] for v in spec["volumes"]} and spec["initContainers"]


S3 = {"model": {"s3": {"uri": "s3://models/org/llama-8b", "endpoint": "http://store.infra:9000", "region": "eu-west-1",
                       "credentialsSecret": "s3-keys"}, "cache": {"size": "20Gi"}}}  # fmt: skip


def test_an_s3_prefix_is_fetched_with_the_keys_only_the_init_container_gets() -> None:
    spec = pod(S3)
    (fetch,) = spec["initContainers"]
    assert fetch["args"][:5] == ["s3://models/org/llama-8b", "--cache", "/models/cache", "--link",
                                 "/models/cache/revisions/s3/models--org--llama-8b"]  # fmt: skip
    env = {e["name"]: e.get("value") or e["valueFrom"]["secretKeyRef"] for e in fetch["env"]}
    assert env["AWS_ENDPOINT_URL"] == "http://store.infra:9000" and env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"] == {"name": "s3-keys", "key": "AWS_ACCESS_KEY_ID", "optional": False}
    assert env["AWS_SESSION_TOKEN"]["optional"] is True
    (runtime,) = spec["containers"]
    assert not [e for e in runtime["env"] if e["name"].startswith("AWS_")]
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in runtime["env"]
    entry = json.loads(children(S3)["ConfigMap"]["data"]["model_config.json"])["chat"]
    assert entry["model_path"] == "/models/cache/revisions/s3/models--org--llama-8b"
    public = {"model": {"s3": {"uri": "s3://open-models/x"}, "cache": {"claimName": "models"}}}
    assert [e["name"] for e in pod(public)["initContainers"][0]["env"]] == ["AWS_REGION"]  # no keys, AWS's endpoint
