"""The Deployment running `vif-runtime serve` on the rendered config."""

from __future__ import annotations

import posixpath
from typing import Any

from vif.operator.builders.adapters import adapter_roots, adapter_volumes
from vif.operator.builders.common import (
    CONFIG_DIR,
    CONFIG_FILE,
    HF_CACHE,
    KEYS_FILE,
    LIVE_DIR,
    LIVE_FILE,
    METRICS_PORT,
    PVC_MOUNT,
    RUNTIME_PORT,
    TEMPLATE_DIR,
    api_keys_volume,
    container_ports,
    content_hash,
    shared_pod_settings,
    tracing_env,
)
from vif.operator.builders.configmap import live_configmap_name
from vif.operator.builders.identity import service_account_name
from vif.operator.builders.lifecycle import lifecycle_args, pre_stop_hook, probes
from vif.operator.builders.model_cache import (
    MODEL_CACHE,
    cached_source,
    engine_downloads,
    fetch_container,
    model_cache_volume,
)
from vif.operator.builders.routing import kv_events_args, kv_events_ports
from vif.operator.builders.security import (
    cache_env,
    container_security_context,
    pod_security_context,
    writable_volumes,
)
from vif.operator.builders.tenants import TENANTS_FILE, tenants_volume
from vif.operator.kinds import DEPLOYMENT
from vif.operator.model_ref import ModelRef
from vif.operator.names import CONFIG_HASH
from vif.operator.settings import OperatorSettings


def runtime_args(ref: ModelRef) -> list[str]:
    args = ["--config", CONFIG_FILE, "--model-name", ref.served_name, "--host", "0.0.0.0", "--port", str(RUNTIME_PORT)]
    args += ["--metrics-port", str(METRICS_PORT)]
    args += ["--live-config", LIVE_FILE]
    if ref.spec.api_key_secret is not None:
        args += ["--api-keys-file", KEYS_FILE]
    if ref.spec.tenants is not None:
        args += ["--tenants-file", TENANTS_FILE]  # the router forwards each tenant's key: the replica takes it too
    args += lifecycle_args(ref.spec)
    args += kv_events_args(ref)
    if ref.spec.model.path is not None:
        args += ["--allowed-root", posixpath.dirname(ref.spec.model.path.rstrip("/")) or "/"]
    if ref.spec.model.pvc is not None:
        args += ["--allowed-root", PVC_MOUNT]
    if cached_source(ref) is not None:
        args += ["--allowed-root", MODEL_CACHE]
    if ref.spec.serving.chat_template is not None:
        args += ["--allowed-root", TEMPLATE_DIR]
    for root in adapter_roots(ref):
        args += ["--allowed-root", root]
    return args + list(ref.spec.engine.extra_args)


def runtime_env(ref: ModelRef) -> list[dict[str, Any]]:
    env = cache_env()  # no KV cache size: on CPU the runtime sizes it from the container's memory limit
    source = ref.spec.model.hugging_face
    if source is not None and engine_downloads(ref):
        env.append({"name": "HF_HOME", "value": HF_CACHE})
        if source.token_secret is not None:
            secret = {"name": source.token_secret.name, "key": source.token_secret.key}
            env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": secret}})
    elif cached_source(ref) is not None:
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})  # loaded from the cache; credentials stay in `fetch`
    user = {e.name for e in ref.spec.env}
    return [e for e in env if e["name"] not in user] + [{"name": e.name, "value": e.value} for e in ref.spec.env]


def resources(ref: ModelRef) -> dict[str, Any]:
    wanted: dict[str, str] = {}
    if ref.spec.resources.cpu:
        wanted["cpu"] = ref.spec.resources.cpu
    if ref.spec.resources.memory:
        wanted["memory"] = ref.spec.resources.memory
    limits = dict(wanted)
    if ref.spec.resources.gpu:
        limits["nvidia.com/gpu"] = str(ref.spec.resources.gpu)
    return {k: v for k, v in (("requests", wanted), ("limits", limits)) if v}


def volumes(ref: ModelRef, config_name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and their mounts: config, the live config, the API keys and the tenants (docs/live-config.md), the
    writable emptyDirs (`security.writable_volumes`), the model's storage, the adapters' PVCs."""
    vols: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_name}},
        {"name": "live", "configMap": {"name": live_configmap_name(ref)}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "live", "mountPath": LIVE_DIR, "readOnly": True},
    ]
    for files in (api_keys_volume(ref), tenants_volume(ref)):
        if files is not None:
            vols.append(files[0])
            mounts.append(files[1])
    writable, writable_mounts = writable_volumes(ref, ref.spec.model.hugging_face is not None and engine_downloads(ref))
    vols += writable
    mounts += writable_mounts
    template = ref.spec.serving.chat_template
    if template is not None:
        # only the named key: every other key of the ConfigMap would be a file at a known path in the pod
        only_key = [{"key": template.key, "path": template.key}]
        vols.append({"name": "chat-template", "configMap": {"name": template.name, "items": only_key}})
        mounts.append({"name": "chat-template", "mountPath": TEMPLATE_DIR, "readOnly": True})
    if ref.spec.model.pvc is not None:
        vols.append(
            {"name": "model", "persistentVolumeClaim": {"claimName": ref.spec.model.pvc.claim_name, "readOnly": True}}
        )
        mounts.append({"name": "model", "mountPath": PVC_MOUNT, "readOnly": True})
    cache = model_cache_volume(ref)
    if cache is not None:
        vols.append(cache[0])
        mounts.append(cache[1])
    adapter_vols, adapter_mounts = adapter_volumes(ref)
    return vols + adapter_vols, mounts + adapter_mounts


def build_deployment(ref: ModelRef, settings: OperatorSettings, configmap: dict[str, Any]) -> dict[str, Any]:
    """`configmap` is the built ConfigMap: its hash on the pod template rolls the pods when it changes."""
    vols, mounts = volumes(ref, configmap["metadata"]["name"])
    image = ref.spec.image or settings.runtime_image
    container = {
        "name": "runtime",
        "image": image,
        "command": ["vif-runtime", "serve"],
        "args": runtime_args(ref),
        "env": runtime_env(ref) + tracing_env(ref, settings.traces_endpoint, "vif-runtime"),
        "ports": container_ports("http") + kv_events_ports(ref),
        "resources": resources(ref),
        "volumeMounts": mounts,
        **probes(),
        "lifecycle": pre_stop_hook(),
        "securityContext": container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": ref.spec.termination_grace_period_seconds,
        "volumes": vols,
        "serviceAccountName": service_account_name(ref),
        "automountServiceAccountToken": False,  # the runtime never calls the Kubernetes API
        "securityContext": pod_security_context(),
    }
    fetch = fetch_container(ref, settings, image)
    if fetch is not None:
        pod_spec["initContainers"] = [fetch]
    if ref.spec.node_selector:
        pod_spec["nodeSelector"] = dict(ref.spec.node_selector)
    if ref.spec.affinity:
        pod_spec["affinity"] = ref.spec.affinity
    pod_spec.update(shared_pod_settings(ref))
    annotations = {**ref.spec.pod_annotations, CONFIG_HASH: content_hash(configmap["data"])}
    template_meta = {"labels": ref.labels(), "annotations": annotations}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": ref.selector()},
        "template": {"metadata": template_meta, "spec": pod_spec},
    }
    if ref.spec.autoscaling is None:  # with autoscaling the HPA owns the replica count
        spec["replicas"] = ref.spec.replicas
    return DEPLOYMENT.manifest(ref.metadata(), spec=spec)
