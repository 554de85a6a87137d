"""A Hugging Face model or an S3 prefix downloaded once into a volume every replica shares (`spec.model.cache`).

The claim is the model's own, `<name>-model-cache`, or one that models share. Each replica's init container
`fetch` runs `vif-runtime fetch` into it, with the only copy of the credentials (the Hugging Face token, the S3
keys). The first downloads
(resumed, verified, published whole: runtime/sources/cache.py); those that start meanwhile wait on its lock, and
every later one, of this model or another of the same source and revision, finds the model there and exits.
The engine's container mounts the volume read-only, and its config names the model by a link the fetch keeps per
revision, so the operator can write the path before the commit is known.
"""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import RUNTIME_PORT
from vif.operator.builders.security import TMP_DIR, TMP_VOLUME, container_security_context
from vif.operator.kinds import PVC
from vif.operator.model_ref import ModelRef
from vif.operator.settings import OperatorSettings
from vif.operator.spec import HuggingFaceSource, ModelCache, S3ModelSource

RemoteSource = HuggingFaceSource | S3ModelSource

MODEL_CACHE = "/models/cache"
VOLUME = "model-cache"
# A failed download keeps answering /progress this long before it exits, so the operator (asking every 5 s) reads
# the cause into the model's status; the kubelet then restarts it, and it resumes.
HOLD_FAILURE_SECONDS = 30


def cached_source(ref: ModelRef) -> tuple[RemoteSource, ModelCache] | None:
    """The model's remote source and its cache, when it has one (the CRD allows a cache only there)."""
    source = ref.spec.model
    remote = source.hugging_face or source.s3
    if source.cache is None or remote is None:
        return None
    return remote, source.cache


def engine_downloads(ref: ModelRef) -> bool:
    """Whether the engine's container fetches from the hub itself (so it needs the token and room): a Hugging Face
    model without a cache, or Hugging Face adapters (vLLM downloads those at start)."""
    hub_model = ref.spec.model.hugging_face is not None and cached_source(ref) is None
    return hub_model or any(a.hugging_face is not None for a in ref.spec.adapters)


def claim_name(ref: ModelRef, cache: ModelCache) -> str:
    return cache.claim_name or f"{ref.name}-model-cache"


def cached_model_path(source: RemoteSource) -> str:
    """Where the engine finds the model: the fetch's link for the revision (a branch name may hold `/`) or the
    S3 prefix."""
    if isinstance(source, S3ModelSource):
        return f"{MODEL_CACHE}/revisions/s3/{source.uri.removeprefix('s3://').strip('/').replace('/', '--')}"
    return f"{MODEL_CACHE}/revisions/{source.id.replace('/', '--')}/{(source.revision or 'main').replace('/', '--')}"


def source_of(ref: ModelRef) -> str:
    """The download's source as `ORG/NAME@REVISION` or its S3 URI: a new one is a new download."""
    cached = cached_source(ref)
    if cached is None:
        return ""
    source = cached[0]
    return source.uri if isinstance(source, S3ModelSource) else f"{source.id}@{source.revision or 'main'}"


def build_model_cache_claim(ref: ModelRef) -> dict[str, Any] | None:
    """The model's own claim, owned by it (deleted with it; its size may grow later where the class allows). None
    for a shared claim, which is the namespace's."""
    cached = cached_source(ref)
    if cached is None or cached[1].claim_name is not None:
        return None
    cache = cached[1]
    spec: dict[str, Any] = {"accessModes": [cache.access_mode], "resources": {"requests": {"storage": cache.size}}}
    if cache.storage_class_name is not None:
        spec["storageClassName"] = cache.storage_class_name
    return PVC.manifest(ref.metadata(claim_name(ref, cache)), spec=spec)


def fetch_container(ref: ModelRef, settings: OperatorSettings, image: str) -> dict[str, Any] | None:
    """The init container that fills the cache: the model's image, the token from its Secret, the operator's hub
    endpoint (a mirror; a model cannot choose where its token goes), the volume writable, /tmp as the engine's;
    its progress on the runtime's port (free until the engine starts), for the operator to read."""
    cached = cached_source(ref)
    if cached is None:
        return None
    source = cached[0]
    if isinstance(source, S3ModelSource):
        env, args = s3_env(source), [source.uri]
    else:
        env, args = hub_env(source, settings), [source.id, "--revision", source.revision or "main"]
    args += ["--cache", MODEL_CACHE, "--link", cached_model_path(source), "--progress-port", str(RUNTIME_PORT),
             "--hold-failure", str(HOLD_FAILURE_SECONDS)]  # fmt: skip
    return {
        "name": "fetch",
        "image": image,
        "command": ["vif-runtime", "fetch"],
        "args": args,
        "env": env,
        "volumeMounts": [{"name": VOLUME, "mountPath": MODEL_CACHE}, {"name": TMP_VOLUME, "mountPath": TMP_DIR}],
        "securityContext": container_security_context(),
    }


def hub_env(source: HuggingFaceSource, settings: OperatorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    if settings.hub_endpoint:
        env.append({"name": "HF_ENDPOINT", "value": settings.hub_endpoint})
    if source.token_secret is not None:
        secret = {"name": source.token_secret.name, "key": source.token_secret.key}
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": secret}})
    return env


def s3_env(source: S3ModelSource) -> list[dict[str, Any]]:
    """The standard AWS variables: the store (checked against the policy's allowed endpoints), the region, and the
    keys from the model's Secret (the session token only if the Secret has one)."""
    env: list[dict[str, Any]] = [{"name": "AWS_REGION", "value": source.region or "us-east-1"}]
    if source.endpoint is not None:
        env.append({"name": "AWS_ENDPOINT_URL", "value": source.endpoint})
    if source.credentials_secret is not None:
        for key, optional in (("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False),
                              ("AWS_SESSION_TOKEN", True)):  # fmt: skip
            ref = {"name": source.credentials_secret, "key": key, "optional": optional}
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def model_cache_volume(ref: ModelRef) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The claim as a volume, and the engine container's read-only mount of it."""
    cached = cached_source(ref)
    if cached is None:
        return None
    volume = {"name": VOLUME, "persistentVolumeClaim": {"claimName": claim_name(ref, cached[1])}}
    return volume, {"name": VOLUME, "mountPath": MODEL_CACHE, "readOnly": True}
