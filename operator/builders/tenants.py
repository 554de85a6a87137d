"""`spec.tenants` (docs/tenants.md): the tenants file the router enforces and the runtime takes keys from.

The file (vif.runtime.shared.tenants reads it) lives in a ConfigMap, `<model>-tenants`, and each tenant's key
stays in its own Secret: one projected volume puts them side by side, the file naming each key by its path. Both
are read again when they change (a limit raised, a key rotated) without a restart of the pods.
"""

from __future__ import annotations

import json
from typing import Any

from vif.operator.kinds import CONFIG_MAP
from vif.operator.model_ref import ModelRef
from vif.operator.settings import OperatorSettings
from vif.operator.spec.model import TenantLimits

TENANTS_DIR = "/etc/vif-tenants"
TENANTS_FILE = f"{TENANTS_DIR}/tenants.json"
VOLUME = "tenants"


def tenants_config_map_name(ref: ModelRef) -> str:
    return f"{ref.name}-tenants"


def _limits(limits: TenantLimits) -> dict[str, int]:
    """The limits set, by the CRD's names (a tenant's own fields left out)."""
    return limits.model_dump(by_alias=True, exclude_none=True, include=set(TenantLimits.model_fields))


def tenants_document(ref: ModelRef) -> dict[str, Any] | None:
    """The tenants file: names, limits, and where each key is mounted (never the key)."""
    tenants = ref.spec.tenants
    if tenants is None:
        return None
    entries = [{"name": t.name, "keyFile": f"keys/{t.name}", **_limits(t)} for t in tenants.keys]
    return {"defaults": _limits(tenants.defaults), "tenants": entries}


def build_tenants_config_map(ref: ModelRef) -> dict[str, Any] | None:
    document = tenants_document(ref)
    if document is None:
        return None
    data = {"tenants.json": json.dumps(document, indent=2, sort_keys=True)}
    return CONFIG_MAP.manifest(ref.metadata(tenants_config_map_name(ref)), data=data)


def tenants_volume(ref: ModelRef) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The file and every tenant's key in one folder, for the router and the runtime alike."""
    if ref.spec.tenants is None:
        return None
    only_file = [{"key": "tenants.json", "path": "tenants.json"}]
    file = {"configMap": {"name": tenants_config_map_name(ref), "items": only_file}}
    keys = [
        {"secret": {"name": t.key_secret.name, "items": [{"key": t.key_secret.key, "path": f"keys/{t.name}"}]}}
        for t in ref.spec.tenants.keys
    ]
    volume = {"name": VOLUME, "projected": {"sources": [file, *keys]}}
    return volume, {"name": VOLUME, "mountPath": TENANTS_DIR, "readOnly": True}


REDIS_URL_ENV = "VIF_REDIS_URL"  # vif-router's --redis-url default


def tenants_router_args(ref: ModelRef, settings: OperatorSettings) -> list[str]:
    """The router's flags: the file, the operator's Redis (none: each router its share; the model's own comes
    through `tenants_router_env`), and what to do while it is away."""
    tenants = ref.spec.tenants
    if tenants is None:
        return []
    # One Redis may serve many models (the operator's does): the scope keeps each model's buckets apart.
    scope = ("--quota-scope", f"{ref.namespace}/{ref.name}")
    if tenants.redis_url_secret is not None:
        redis: tuple[str, ...] = scope
    elif settings.redis_url:
        redis = ("--redis-url", settings.redis_url, *scope)
    else:
        redis = ()
    return [
        *("--tenants-file", TENANTS_FILE, *redis, "--redis-down", tenants.when_redis_down),
        *("--router-replicas", str(ref.spec.routing.replicas)),
    ]


def tenants_router_env(ref: ModelRef) -> list[dict[str, Any]]:
    """The model's own Redis URL, from its Secret: a password in it stays out of the Deployment's spec."""
    secret = ref.spec.tenants.redis_url_secret if ref.spec.tenants is not None else None
    if secret is None:
        return []
    return [{"name": REDIS_URL_ENV, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}}]
