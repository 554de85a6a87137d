"""The Service in front of the pods, and the ServiceMonitor that scrapes them."""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import ModelRef
from vif.operator.builders.routing import front_selector


def build_service(ref: ModelRef) -> dict[str, Any]:
    """The model's Service (status.endpoint): in front of the router's pods, or the replicas without a router."""
    port = {"name": "http", "port": ref.spec.service.port, "targetPort": "http", "protocol": "TCP"}
    spec = {"type": ref.spec.service.type, "selector": front_selector(ref), "ports": [port]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": ref.metadata(), "spec": spec}


def build_service_monitor(ref: ModelRef) -> dict[str, Any]:
    endpoint = {"port": "http", "path": "/metrics", "interval": ref.spec.monitoring.interval}
    spec = {"selector": {"matchLabels": ref.selector()}, "endpoints": [endpoint]}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": ref.metadata(),
        "spec": spec,
    }
