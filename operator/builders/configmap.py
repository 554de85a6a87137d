"""The runtime's `model_config.json`, rendered from the spec into a ConfigMap the pods mount."""

from __future__ import annotations

import json
from typing import Any

from vif.operator.builders.adapters import lora_adapters
from vif.operator.builders.common import PVC_MOUNT, TEMPLATE_DIR, content_hash
from vif.operator.builders.model_cache import cached_model_path, cached_source
from vif.operator.kinds import CONFIG_MAP
from vif.operator.model_ref import ModelRef


def model_source(ref: ModelRef) -> dict[str, str]:
    """`model_path` for weights on disk (image, PVC or the download cache), `model_id` for a Hugging Face id vLLM
    downloads."""
    source = ref.spec.model
    cached = cached_source(ref)
    if cached is not None:
        return {"model_path": cached_model_path(cached[0])}
    if source.path is not None:
        return {"model_path": source.path}
    if source.pvc is not None:
        return {"model_path": f"{PVC_MOUNT}/{source.pvc.path}".rstrip("/")}
    assert source.hugging_face is not None  # the CRD's CEL rule guarantees exactly one source
    return {"model_id": source.hugging_face.id}


def engine_args(ref: ModelRef) -> dict[str, Any]:
    engine = ref.spec.engine
    args: dict[str, Any] = {"tensor_parallel_size": engine.tensor_parallel_size}
    if engine.dtype != "auto":
        args["dtype"] = engine.dtype
    elif ref.spec.resources.gpu == 0:
        # vLLM's "auto" picks bfloat16 on CPUs, whose path gives wrong tokens on AMX machines (docs/architecture.md)
        args["dtype"] = "float32"
    if engine.gpu_memory_utilization is not None:
        args["gpu_memory_utilization"] = engine.gpu_memory_utilization
    if ref.spec.model.hugging_face is not None and ref.spec.model.hugging_face.revision and not cached_source(ref):
        args["revision"] = ref.spec.model.hugging_face.revision
    if ref.spec.resources.gpu == 0:
        args["enforce_eager"] = True  # CPU: skip graph compilation, which only slows start-up there
    return args


def model_config(ref: ModelRef) -> dict[str, Any]:
    serving = ref.spec.serving
    entry: dict[str, Any] = {
        "class_name": serving.class_name,
        **model_source(ref),
        "engine_args": engine_args(ref),
    }
    if ref.spec.engine.max_model_len is not None:
        entry["max_model_len"] = ref.spec.engine.max_model_len
    if serving.chat_template is not None:
        entry["chat_template"] = f"{TEMPLATE_DIR}/{serving.chat_template.key}"
    if ref.spec.adapters:
        entry["lora_adapters"] = lora_adapters(ref)
    return {ref.served_name: entry}


def build_configmap(ref: ModelRef) -> dict[str, Any]:
    """What needs a new engine. Immutable and named by its content: a changed config is a new ConfigMap that only
    the new pods mount, so running pods keep the config they started with (and the old one is pruned once the
    rollout is done)."""
    data = {"model_config.json": json.dumps(model_config(ref), indent=2, sort_keys=True) + "\n"}
    return CONFIG_MAP.manifest(ref.metadata(f"{ref.name}-config-{content_hash(data)[:10]}"), immutable=True, data=data)


def live_config(ref: ModelRef) -> dict[str, Any]:
    """The runtime's `--live-config` (vif.runtime.app.live.LiveFile): what the running replicas take live."""
    serving = ref.spec.serving
    live: dict[str, Any] = {"response_role": serving.response_role, "log_level": serving.log_level}
    if (cache := serving.response_cache) is not None:
        live["response_cache"] = {"max_entries": cache.max_entries, "max_bytes": cache.max_mebibytes << 20,
                                  "ttl_seconds": cache.ttl_seconds}  # fmt: skip
    return live


def live_configmap_name(ref: ModelRef) -> str:
    return f"{ref.name}-live"


def build_live_configmap(ref: ModelRef) -> dict[str, Any]:
    """What the replicas reload without a restart (docs/live-config.md): one name, updated in place, and kept out of
    the pods' config hash, so a change reaches the running pods through the kubelet instead of rolling them."""
    data = {"live.json": json.dumps(live_config(ref), indent=2, sort_keys=True) + "\n"}
    return CONFIG_MAP.manifest(ref.metadata(live_configmap_name(ref)), data=data)
