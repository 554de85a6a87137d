"""Many InferenceModels at once: one List applied server-side, Ready counted, the operator's metrics read.

Shared by the 100-model cluster test and `make bench-operator`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import yaml

from helpers.cluster import kubectl

FLEET_SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}


def fleet_manifest(count: int, spec: dict[str, Any] = FLEET_SPEC) -> str:
    items = [
        {"apiVersion": "inference.vif.dev/v1alpha1", "kind": "InferenceModel", "metadata": {"name": f"m{i:04d}"},
         "spec": spec}
        for i in range(count)
    ]  # fmt: skip
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})


def apply_fleet(namespace: str, count: int) -> None:
    kubectl("apply", "--server-side", "-n", namespace, "-f", "-", stdin=fleet_manifest(count))


def ready_models(namespace: str) -> int:
    listed = kubectl("get", "inferencemodels", "-n", namespace, "-o", "json", check=False)
    if listed.returncode != 0:
        return 0
    ready = 0
    for model in json.loads(listed.stdout)["items"]:
        conditions = (model.get("status") or {}).get("conditions", [])
        ready += any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready


def operator_metrics(port: int) -> dict[str, float]:
    """The operator's Prometheus samples, by series (name with its labels)."""
    samples = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def api_requests(samples: dict[str, float], writes_only: bool = False) -> float:
    return sum(
        value
        for series, value in samples.items()
        if series.startswith("vif_operator_api_requests_total{") and not (writes_only and 'verb="GET"' in series)
    )


def reconciles(samples: dict[str, float]) -> float:
    return sum(v for s, v in samples.items() if s.startswith("vif_operator_reconciles_total{"))
