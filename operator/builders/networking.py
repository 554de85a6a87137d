"""The Service in front of the pods, the ServiceMonitor that scrapes them, and the NetworkPolicy that fences them."""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import METRICS_PORT_NAME, service_ports
from vif.operator.builders.model_cache import cached_source
from vif.operator.builders.routing import KV_EVENTS_PORT_NAME, front_selector, publishes_kv_events, wants_router
from vif.operator.kinds import NETWORK_POLICY, SERVICE, SERVICE_MONITOR
from vif.operator.model_ref import ModelRef
from vif.operator.names import router_selector
from vif.operator.settings import OperatorSettings

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server


def build_service(ref: ModelRef) -> dict[str, Any]:
    """The model's Service (status.endpoint): in front of the router's pods, or the replicas without a router."""
    ports = service_ports("http", ref.spec.service.port)
    spec = {"type": ref.spec.service.type, "selector": front_selector(ref), "ports": ports}
    return SERVICE.manifest(ref.metadata(), spec=spec)


def build_service_monitor(ref: ModelRef) -> dict[str, Any]:
    endpoint = {"port": METRICS_PORT_NAME, "path": "/metrics", "interval": ref.spec.monitoring.interval}
    spec = {"selector": {"matchLabels": ref.selector()}, "endpoints": [endpoint]}
    return SERVICE_MONITOR.manifest(ref.metadata(), spec=spec)


def build_network_policy(ref: ModelRef, settings: OperatorSettings) -> dict[str, Any] | None:
    """The replicas take traffic on their API's port only from the model's router, the listed namespaces and pods,
    and, for a model that downloads into a cache or reads keys or a template of the user's live, the operator's
    namespace; on the metrics port only from the monitoring namespace; on the KV events port (`kv-aware`) only from
    the router. No rule at all means no traffic. None when neither the operator nor the model asks for it."""
    wanted = ref.spec.network_policy
    if wanted.mode == "auto" and not settings.network_policy:
        return None
    peers: list[dict[str, Any]] = []
    if wants_router(ref):
        peers.append({"podSelector": {"matchLabels": router_selector(ref.name)}})
    namespaces = list(wanted.from_namespaces)
    # the operator asks a download's progress (operator/downloads.py) and whether the replicas took a new key or
    # template of the user's (operator/live_watch.py)
    asked = cached_source(ref) is not None or ref.spec.api_key_secret is not None or ref.spec.serving.chat_template
    if settings.operator_namespace and asked:
        namespaces.append(settings.operator_namespace)
    peers += [_namespace(ns) for ns in dict.fromkeys(namespaces)]
    if wanted.from_pod_labels:
        peers.append({"podSelector": {"matchLabels": wanted.from_pod_labels}})
    ingress = [{"from": peers, "ports": [{"port": "http", "protocol": "TCP"}]}] if peers else []
    if publishes_kv_events(ref):  # the engine's KV cache events: to the model's router only
        router = [{"podSelector": {"matchLabels": router_selector(ref.name)}}]
        ingress.append({"from": router, "ports": [{"port": KV_EVENTS_PORT_NAME, "protocol": "TCP"}]})
    if settings.monitoring_namespace:
        metrics_port = [{"port": METRICS_PORT_NAME, "protocol": "TCP"}]
        ingress.append({"from": [_namespace(settings.monitoring_namespace)], "ports": metrics_port})
    spec = {"podSelector": {"matchLabels": ref.selector()}, "policyTypes": ["Ingress"], "ingress": ingress}
    return NETWORK_POLICY.manifest(ref.metadata(), spec=spec)


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}
