"""The InferencePool (Gateway API Inference Extension, `inference.networking.k8s.io/v1`) of a model's pods.

A gateway that implements the extension routes a model's traffic through an endpoint picker (EPP) that chooses
among the pool's pods; the pool is the gateway's view of the model. Like the ServiceMonitor it exists only
where its CRD is installed (`spec.inferencePool.mode: auto`). The pool selects the runtime's pods, never the
router's: the EPP does the router's job for that gateway.
"""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import RUNTIME_PORT
from vif.operator.kinds import INFERENCE_POOL
from vif.operator.model_ref import ModelRef


def wants_inference_pool(ref: ModelRef, crd_installed: bool) -> bool:
    mode = ref.spec.inference_pool.mode
    return mode == "on" or (mode == "auto" and crd_installed)


def build_inference_pool(ref: ModelRef) -> dict[str, Any]:
    settings = ref.spec.inference_pool
    picker = {
        "kind": "Service",
        "name": settings.endpoint_picker or f"{ref.name}-epp",
        "port": {"number": settings.endpoint_picker_port},
    }
    spec = {
        "selector": {"matchLabels": ref.selector()},
        "targetPorts": [{"number": RUNTIME_PORT}],
        "endpointPickerRef": picker,
    }
    return INFERENCE_POOL.manifest(ref.metadata(), spec=spec)
