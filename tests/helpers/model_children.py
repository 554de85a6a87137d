"""A model's children from the pure builders, by kind, for tests about the model's own objects."""

from __future__ import annotations

from typing import Any

from vif.operator.builders import build_children
from vif.operator.builders.routing import replicas_service_name, router_name
from vif.operator.model_ref import ModelRef
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec


def own_children(
    spec: dict[str, Any], settings: OperatorSettings | None = None, service_monitor_crd: bool = False
) -> dict[str, dict[str, Any]]:
    """The children of model `chat` in namespace `team-a`, by kind, without the router's (its Deployment, Role,
    ... and the `-replicas` Service): a model has a router by default, and its kinds would shadow the model's. The
    live ConfigMap is `ConfigMap/live`."""
    ref = ModelRef("chat", "team-a", "uid-1", InferenceModelSpec.model_validate(spec))
    routers = {router_name(ref), replicas_service_name(ref)}
    built = build_children(ref, settings or OperatorSettings(), service_monitor_crd)
    # the live ConfigMap (`<name>-live`) under its own key, so `ConfigMap` stays the model's config
    by_kind = {c["kind"]: c for c in built if c["metadata"]["name"] not in routers | {"chat-live"}}
    by_kind["ConfigMap/live"] = next(c for c in built if c["metadata"]["name"] == "chat-live")
    return by_kind
