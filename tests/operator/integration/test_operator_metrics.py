"""The operator's own metrics count reconciliations by result."""

from __future__ import annotations

from pathlib import Path

import httpx

from helpers.processes import free_port

from .conftest import OperatorProcess, apply_model, get, model_manifest, wait_for


def reconciles(port: int, result: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    line = next(
        (li for li in text.splitlines() if li.startswith(f'vif_operator_reconciles_total{{result="{result}"}}')), None
    )
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def test_metrics_count_reconciles(namespace: str, tmp_path: Path) -> None:
    port = free_port()
    operator = OperatorProcess(namespace, tmp_path, ("--metrics-port", str(port)))
    operator.start()
    try:
        apply_model(namespace, model_manifest("counted", {"model": {"path": "/models/m"}}))
        wait_for(lambda: get("deployment", "counted", namespace), "the Deployment")
        wait_for(lambda: reconciles(port, "ok") >= 1, "an ok reconcile in the metrics")
        apply_model(namespace, model_manifest("wrong", {"model": {"path": "/m"}, "image": "registry.example/other:1"}))
        wait_for(lambda: reconciles(port, "PolicyViolation") >= 1, "a PolicyViolation reconcile in the metrics")
        assert "vif_operator_reconcile_seconds_count" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        operator.kill()
