"""A ServiceMonitor appears only where the Prometheus Operator's CRD is installed (monitoring: auto)."""

from __future__ import annotations

from helpers.cluster import cached_tool, wait_established

from .conftest import OperatorProcess, apply_model, get, kubectl, model_manifest, model_with, wait_for

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}


def test_service_monitor_follows_the_crd(namespace: str, operator_process: OperatorProcess) -> None:
    kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "--ignore-not-found", "--wait=true")
    apply_model(namespace, model_manifest("without", SPEC))
    wait_for(lambda: get("service", "without", namespace), "the Service")
    assert kubectl("get", "servicemonitors", "-n", namespace, check=False).returncode != 0  # the kind does not exist
    wait_for(lambda: model_with("without", namespace, "Degraded", "False"), "auto: no ServiceMonitor, not Degraded")
    apply_model(namespace, model_manifest("forced", {**SPEC, "monitoring": {"serviceMonitor": "on"}}))
    forced = wait_for(lambda: model_with("forced", namespace, "Degraded", "True"), "Degraded without the CRD")
    assert next(c for c in forced["status"]["conditions"] if c["type"] == "Degraded")["reason"] == "KindNotInstalled"

    kubectl("apply", "--server-side", "-f", str(cached_tool("monitoring.coreos.com_servicemonitors.yaml")))
    wait_established("servicemonitors.monitoring.coreos.com")
    apply_model(namespace, model_manifest("with", {**SPEC, "monitoring": {"interval": "15s"}}))
    monitor = wait_for(lambda: get("servicemonitor", "with", namespace), "the ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "with"

    apply_model(namespace, model_manifest("opted-out", {**SPEC, "monitoring": {"serviceMonitor": "off"}}))
    wait_for(lambda: get("service", "opted-out", namespace), "the Service")
    assert get("servicemonitor", "opted-out", namespace) is None
