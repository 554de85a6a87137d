"""LoRA adapters (`spec.adapters`): where each one's files are in the pod, and the volumes that put them there."""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import ADAPTER_PVC_DIR, PVC_MOUNT
from vif.operator.model_ref import ModelRef
from vif.operator.spec import Adapter


def claim_mounts(ref: ModelRef) -> dict[str, str]:
    """Each PVC holding adapters -> where it is mounted: the model's own PVC is mounted already, the others
    under `ADAPTER_PVC_DIR` (inside /models, an allowed root of the runtime's by default)."""
    model_claim = ref.spec.model.pvc.claim_name if ref.spec.model.pvc is not None else None
    claims = sorted({a.pvc.claim_name for a in ref.spec.adapters if a.pvc is not None})
    return {claim: PVC_MOUNT if claim == model_claim else f"{ADAPTER_PVC_DIR}/{claim}" for claim in claims}


def adapter_source(ref: ModelRef, adapter: Adapter) -> str | dict[str, str]:
    """The adapter's value in model_config.json's `lora_adapters`: its folder in the pod, or the Hugging Face id
    vLLM downloads at start-up."""
    if adapter.path is not None:
        return adapter.path
    if adapter.pvc is not None:
        return f"{claim_mounts(ref)[adapter.pvc.claim_name]}/{adapter.pvc.path}".rstrip("/")
    assert adapter.hugging_face is not None  # the CRD's CEL rule guarantees exactly one source
    return {"model_id": adapter.hugging_face.id}


def lora_adapters(ref: ModelRef) -> dict[str, str | dict[str, str]]:
    return {adapter.name: adapter_source(ref, adapter) for adapter in ref.spec.adapters}


def adapter_roots(ref: ModelRef) -> list[str]:
    """The adapters given by path, each its own `--allowed-root` of the runtime's (PVCs are under /models). The
    adapter's folder itself, not its parent: `/lora` must not make all of `/` allowed."""
    folders = (a.path.rstrip("/") or "/" for a in ref.spec.adapters if a.path is not None)
    return list(dict.fromkeys(folders))


def adapter_volumes(ref: ModelRef) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A read-only volume and mount for each PVC holding adapters, but the model's own."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for index, (claim, path) in enumerate(claim_mounts(ref).items()):
        if path == PVC_MOUNT:
            continue
        name = f"adapters-{index}"  # not the claim's name: a volume name is a DNS label, `adapters-<claim>` may not be
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": name, "mountPath": path, "readOnly": True})
    return volumes, mounts
