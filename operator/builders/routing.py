"""The vif-router in front of a model's replicas (`spec.routing`, docs/router.md): its Deployment, the Service of
the replicas it discovers, and the identity that lets it read that Service's EndpointSlices and nothing else.

With a router the model's Service (`<model>`, whose URL is status.endpoint) selects the router's pods, and the
router watches the EndpointSlices of `<model>-replicas`, which selects the runtime's pods. With `kv-aware` each
replica's engine also publishes its KV cache events on `KV_EVENTS_PORT`, and the router subscribes to them.
"""

from __future__ import annotations

import json
from typing import Any

from vif.operator.builders.common import (
    KEYS_FILE,
    METRICS_PORT,
    RUNTIME_PORT,
    api_keys_volume,
    container_ports,
    service_ports,
    shared_pod_settings,
    tracing_env,
)
from vif.operator.builders.lifecycle import pre_stop_hook, probe
from vif.operator.builders.security import TMP_DIR, container_security_context, pod_security_context
from vif.operator.builders.tenants import tenants_router_args, tenants_router_env, tenants_volume
from vif.operator.kinds import DEPLOYMENT, PDB, ROLE, ROLE_BINDING, SERVICE, SERVICE_ACCOUNT
from vif.operator.model_ref import ModelRef
from vif.operator.names import router_labels, router_selector
from vif.operator.settings import OperatorSettings

PORT_NAME = "http"  # the runtime's port name in the replicas' Service, and the router's own
ROUTER_CPU_REQUEST = "100m"
ROUTER_MEMORY_REQUEST = "128Mi"
ROUTER_MEMORY_LIMIT_BYTES = 512 << 20
ROUTER_MEMORY_LIMIT = f"{ROUTER_MEMORY_LIMIT_BYTES >> 20}Mi"
# The router holds requests in memory while no replica is ready: so many of the largest bodies (the runtime's own
# limit, vif.runtime.shared.api_keys.MAX_BODY_BYTES) fit in half its memory limit, the rest is its own and the bodies in
# flight to replicas.
ROUTER_MAX_BODY_BYTES = 4 << 20
ROUTER_MAX_HELD = ROUTER_MEMORY_LIMIT_BYTES // 2 // ROUTER_MAX_BODY_BYTES
KV_EVENTS_PORT = 5557  # vLLM's default for its events' ZeroMQ PUB socket
KV_EVENTS_PORT_NAME = "kv-events"


def wants_router(ref: ModelRef) -> bool:
    return ref.spec.routing.strategy != "none"


def publishes_kv_events(ref: ModelRef) -> bool:
    return ref.spec.routing.strategy == "kv-aware"


def kv_events_args(ref: ModelRef) -> list[str]:
    """The engine's flag that publishes its KV cache events for the router, on every address of the pod."""
    if not publishes_kv_events(ref):
        return []
    config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{KV_EVENTS_PORT}"}
    return ["--kv-events-config", json.dumps(config, separators=(",", ":"))]


def kv_events_ports(ref: ModelRef) -> list[dict[str, Any]]:
    """The runtime container's events port, named for the NetworkPolicy that lets only the router reach it."""
    if not publishes_kv_events(ref):
        return []
    return [{"name": KV_EVENTS_PORT_NAME, "containerPort": KV_EVENTS_PORT, "protocol": "TCP"}]


def router_name(ref: ModelRef) -> str:
    """The router's Deployment, ServiceAccount, Role and RoleBinding."""
    return f"{ref.name}-router"


def replicas_service_name(ref: ModelRef) -> str:
    return f"{ref.name}-replicas"


def front_selector(ref: ModelRef) -> dict[str, str]:
    """What the model's own Service selects: the router's pods when there is one, else the replicas."""
    return router_selector(ref.name) if wants_router(ref) else ref.selector()


def _metadata(ref: ModelRef, name: str) -> dict[str, Any]:
    return {**ref.metadata(name), "labels": router_labels(ref.name)}


def build_replicas_service(ref: ModelRef) -> dict[str, Any]:
    """A ClusterIP Service of the runtime pods, port named as the model's Service's: the router's discovery."""
    spec = {"type": "ClusterIP", "selector": ref.selector(), "ports": service_ports(PORT_NAME, RUNTIME_PORT)}
    # The runtime's labels: it fronts the replicas, so a ServiceMonitor keeps scraping them through it.
    metadata = ref.metadata(replicas_service_name(ref))
    return SERVICE.manifest(metadata, spec=spec)


def build_router_service_account(ref: ModelRef) -> dict[str, Any]:
    return SERVICE_ACCOUNT.manifest(_metadata(ref, router_name(ref)))


def build_router_role(ref: ModelRef) -> dict[str, Any]:
    """Read-only access to the namespace's EndpointSlices: all the router asks of the API server."""
    rule = {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    return ROLE.manifest(_metadata(ref, router_name(ref)), rules=[rule])


def build_router_role_binding(ref: ModelRef) -> dict[str, Any]:
    name = router_name(ref)
    return ROLE_BINDING.manifest(
        _metadata(ref, name),
        roleRef={"apiGroup": ROLE.group, "kind": ROLE.name, "name": name},
        subjects=[{"kind": SERVICE_ACCOUNT.name, "name": name, "namespace": ref.namespace}],
    )


def router_args(ref: ModelRef, settings: OperatorSettings) -> list[str]:
    service = f"{ref.namespace}/{replicas_service_name(ref)}"
    return [
        *("--service", service, "--service-port", PORT_NAME, "--strategy", ref.spec.routing.strategy),
        *("--port", str(RUNTIME_PORT), "--model-name", ref.served_name, "--host", "0.0.0.0"),
        *("--metrics-port", str(METRICS_PORT)),
        *("--max-wait", str(ref.spec.routing.max_wait_seconds)),
        *("--first-byte-timeout", str(ref.spec.routing.first_byte_timeout_seconds)),
        *("--idle-timeout", str(ref.spec.routing.idle_timeout_seconds)),
        *("--max-pending", str(ROUTER_MAX_HELD), "--max-body-bytes", str(ROUTER_MAX_BODY_BYTES)),
        *(("--session-affinity",) if ref.spec.routing.session_affinity else ()),
        *(("--kv-events-port", str(KV_EVENTS_PORT)) if publishes_kv_events(ref) else ()),
        *_fair_queue_args(ref.spec.routing.max_in_flight_per_replica, ref.spec.routing.replicas),
        # the model's API keys, mounted as the runtime's are: the router refuses a request without one before it
        # holds it, so an unauthenticated client cannot wake a model scaled to zero
        *(("--api-keys-file", KEYS_FILE) if ref.spec.api_key_secret is not None else ()),
        *tenants_router_args(ref, settings),
    ]


def _fair_queue_args(per_replica: int, routers: int) -> tuple[str, ...]:
    """Each router's share of a replica's places (rounded up: a full batch, and at most `routers - 1` requests
    queued inside the engine), so the model's routers together hold a replica to `per_replica`."""
    return ("--max-in-flight-per-replica", str(-(-per_replica // routers))) if per_replica else ()


def build_router_deployment(ref: ModelRef, settings: OperatorSettings) -> dict[str, Any]:
    """`vif-router` from the runtime's image, with the runtime's restricted pod security."""
    files = [v for v in (api_keys_volume(ref), tenants_volume(ref)) if v is not None]
    container = {
        "name": "router",
        "image": ref.spec.image or settings.runtime_image,
        "command": ["vif-router"],
        "args": router_args(ref, settings),
        "env": [*tracing_env(ref, settings.traces_endpoint, "vif-router"), *tenants_router_env(ref)],
        "ports": container_ports(PORT_NAME),
        "resources": {
            "requests": {"cpu": ROUTER_CPU_REQUEST, "memory": ROUTER_MEMORY_REQUEST},
            "limits": {"memory": ROUTER_MEMORY_LIMIT},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": TMP_DIR}, *(mount for _, mount in files)],
        # Readiness is /health, not /ready: /ready fails while no replica is ready, which would take the router
        # out of the model's Service exactly when it must hold requests (a model scaling up, or from zero) and
        # turn them into connection errors instead.
        "readinessProbe": probe("/health", 5, 3),
        "livenessProbe": probe("/health", 10, 6),
        "lifecycle": pre_stop_hook(),  # let the endpoints drop the pod before it stops listening
        "securityContext": container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, *(volume for volume, _ in files)],
        "serviceAccountName": router_name(ref),
        "automountServiceAccountToken": True,  # the router watches EndpointSlices with it
        "securityContext": pod_security_context(),
    }
    pod_spec.update(router_placement(ref))
    spec = {
        "replicas": ref.spec.routing.replicas,
        "selector": {"matchLabels": router_selector(ref.name)},
        "template": {"metadata": {"labels": router_labels(ref.name)}, "spec": pod_spec},
    }
    return DEPLOYMENT.manifest(_metadata(ref, router_name(ref)), spec=spec)


def router_placement(ref: ModelRef) -> dict[str, Any]:
    """Where the router's pods may run: the model's pull secrets, tolerations and priority (so it can share the
    model's tainted node pool, and is not evicted before the replicas it fronts), not its node selector or affinity
    (those pick accelerators a proxy does not need); replicas spread over nodes, so one node's loss leaves a
    router."""
    placement = shared_pod_settings(ref)
    if ref.spec.routing.replicas > 1:
        placement["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": router_selector(ref.name)},
            }
        ]
    return placement


def build_router_pdb(ref: ModelRef) -> dict[str, Any] | None:
    """With more than one router replica, a drain takes them one at a time (one replica gets no PDB: it would
    block node drains forever)."""
    if ref.spec.routing.replicas <= 1:
        return None
    spec = {"maxUnavailable": 1, "selector": {"matchLabels": router_selector(ref.name)}}
    return PDB.manifest(_metadata(ref, router_name(ref)), spec=spec)


def build_router_children(ref: ModelRef, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The router's children in apply order (its identity before its pods), or none without a router."""
    if not wants_router(ref):
        return []
    children = [
        build_router_service_account(ref),
        build_router_role(ref),
        build_router_role_binding(ref),
        build_replicas_service(ref),
        build_router_deployment(ref, settings),
    ]
    pdb = build_router_pdb(ref)
    return children + ([pdb] if pdb is not None else [])
