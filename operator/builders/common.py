"""Paths and helpers shared by the builders."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vif.operator.model_ref import ModelRef
from vif.operator.reasons import Reason
from vif.operator.settings import OperatorSettings

RUNTIME_PORT = 8000
# /metrics of the runtime and the router, on a port of its own (`--metrics-port`): the NetworkPolicy lets the
# monitoring namespace reach it and nothing else, and clients reach only the API's port.
METRICS_PORT = 9090
METRICS_PORT_NAME = "metrics"
CONFIG_DIR = "/etc/vif"
CONFIG_FILE = f"{CONFIG_DIR}/model_config.json"
TEMPLATE_DIR = "/etc/vif-chat-template"  # not under CONFIG_DIR: a mount inside a read-only ConfigMap mount fails
# Live settings (docs/live-config.md): whole-folder mounts, which the kubelet updates in place (a subPath never is)
LIVE_DIR = "/etc/vif-live"
LIVE_FILE = f"{LIVE_DIR}/live.json"
KEYS_DIR = "/etc/vif-api-keys"
KEYS_FILE = f"{KEYS_DIR}/keys"
PVC_MOUNT = "/models/pvc"
ADAPTER_PVC_DIR = "/models/adapters"  # PVCs of LoRA adapters, each at <dir>/<claim name>
HF_CACHE = "/models/hf-cache"


def container_ports(api_name: str) -> list[dict[str, Any]]:
    """The API's port (named `api_name`) and the metrics port of a runtime or router container."""
    return [
        {"name": api_name, "containerPort": RUNTIME_PORT, "protocol": "TCP"},
        {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
    ]


def service_ports(api_name: str, api_port: int) -> list[dict[str, Any]]:
    """A Service's two ports in front of such containers: the API's (`api_port`) and /metrics (a ServiceMonitor's)."""
    return [
        {"name": api_name, "port": api_port, "targetPort": api_name, "protocol": "TCP"},
        {"name": METRICS_PORT_NAME, "port": METRICS_PORT, "targetPort": METRICS_PORT_NAME, "protocol": "TCP"},
    ]


def shared_pod_settings(ref: ModelRef) -> dict[str, Any]:
    """What every pod of a model takes from its spec, the runtime's and the router's alike: image pull secrets,
    tolerations (to share the model's tainted node pool) and priority class."""
    settings: dict[str, Any] = {}
    if ref.spec.image_pull_secrets:
        settings["imagePullSecrets"] = [{"name": name} for name in ref.spec.image_pull_secrets]
    if ref.spec.tolerations:
        settings["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in ref.spec.tolerations]
    if ref.spec.priority_class_name:
        settings["priorityClassName"] = ref.spec.priority_class_name
    return settings


def api_keys_volume(ref: ModelRef) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The model's API keys Secret as a file (`KEYS_FILE`), for the runtime and the router alike: mounted, not in
    env, so a rotated key reaches the running pods (the kubelet updates a mounted Secret; an env var never
    changes)."""
    secret = ref.spec.api_key_secret
    if secret is None:
        return None
    only_key = [{"key": secret.key, "path": KEYS_FILE.rsplit("/", 1)[1]}]
    volume = {"name": "api-keys", "secret": {"secretName": secret.name, "items": only_key}}
    return volume, {"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True}


def tracing_env(ref: ModelRef, endpoint: str, service: str) -> list[dict[str, Any]]:
    """The standard OpenTelemetry variables for a model with `spec.tracing` (docs/tracing.md): the operator's
    collector (for the logs too with `tracing.logs`), the model's ratio (parent-based: a client's sampled trace is
    kept), and who the spans are from."""
    if ref.spec.tracing is None or not endpoint:
        return []
    attributes = f"k8s.namespace.name={ref.namespace},vif.model={ref.name}"
    logs = [{"name": "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "value": endpoint}] if ref.spec.tracing.logs else []
    return [
        *logs,
        {"name": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "value": endpoint},
        {"name": "OTEL_TRACES_SAMPLER", "value": "parentbased_traceidratio"},
        {"name": "OTEL_TRACES_SAMPLER_ARG", "value": str(ref.spec.tracing.sample_ratio)},
        {"name": "OTEL_SERVICE_NAME", "value": service},
        {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": attributes},
    ]


def tracing_problem(ref: ModelRef, settings: OperatorSettings) -> tuple[str, str] | None:
    """(reason, message) when the model asks for traces the operator has no collector for: it serves untraced."""
    if ref.spec.tracing is None or settings.traces_endpoint:
        return None
    message = "spec.tracing is set but the operator has no collector (--traces-endpoint, chart value tracing.endpoint)"
    return Reason.TRACING_ENDPOINT_MISSING, message + "; serving without traces"


def content_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
