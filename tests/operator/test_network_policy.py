"""spec.networkPolicy: who may reach a model's replicas, as a pure builder."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from vif.operator.builders import build_children
from vif.operator.model_ref import ModelRef
from vif.operator.names import router_selector, selector
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec

MODEL = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}


def policy(spec: dict[str, Any], **settings: Any) -> dict[str, Any] | None:
    ref = ModelRef("chat", "team-a", "uid-1", InferenceModelSpec.model_validate(spec))
    found = [c for c in build_children(ref, OperatorSettings(**settings), False) if c["kind"] == "NetworkPolicy"]
    assert len(found) <= 1
    return found[0] if found else None


def sources(spec: dict[str, Any], port: str = "http", **settings: Any) -> list[dict[str, Any]]:
    """Who may reach the replicas' `port` (http: the API's; metrics: /metrics'; kv-events: the engine's KV events)."""
    built = policy(spec, **settings)
    assert built is not None
    rules = [rule for rule in built["spec"]["ingress"] if rule["ports"] == [{"port": port, "protocol": "TCP"}]]
    assert len(rules) == 1 and len(built["spec"]["ingress"]) <= 3, built["spec"]["ingress"]
    return list(rules[0]["from"])


def test_none_unless_the_operator_or_the_model_asks() -> None:
    assert policy(MODEL) is None
    assert policy({**MODEL, "networkPolicy": {"mode": "on"}}) is not None
    assert policy(MODEL, network_policy=True) is not None


def test_a_model_cannot_opt_out_of_the_operators_fence() -> None:
    with pytest.raises(ValidationError):
        InferenceModelSpec.model_validate({**MODEL, "networkPolicy": {"mode": "off"}})


def test_the_replicas_take_traffic_from_their_router_only_by_default() -> None:
    built = policy(MODEL, network_policy=True)
    assert built is not None
    assert built["metadata"]["name"] == "chat" and built["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert built["spec"]["podSelector"] == {"matchLabels": selector("chat")}  # the replicas, not the router
    assert built["spec"]["policyTypes"] == ["Ingress"]
    assert sources(MODEL, network_policy=True) == [{"podSelector": {"matchLabels": router_selector("chat")}}]


def test_listed_namespaces_and_pods_reach_the_api() -> None:
    spec = {**MODEL, "networkPolicy": {"mode": "on", "fromNamespaces": ["apps", "apps"],
                                       "fromPodLabels": {"role": "batch"}}}  # fmt: skip
    by_name = "kubernetes.io/metadata.name"
    assert sources(spec, monitoring_namespace="monitoring") == [
        {"podSelector": {"matchLabels": router_selector("chat")}},
        {"namespaceSelector": {"matchLabels": {by_name: "apps"}}},  # once, though named twice
        {"podSelector": {"matchLabels": {"role": "batch"}}},
    ]


def test_the_monitoring_namespace_reaches_the_metrics_port_alone() -> None:
    """Prometheus scrapes /metrics on its own port (`--metrics-port`); it does not reach the API, and nothing
    else reaches /metrics."""
    spec = {**MODEL, "networkPolicy": {"mode": "on"}}
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert sources(spec, "metrics", monitoring_namespace="monitoring") == [monitoring]
    assert monitoring not in sources(spec, monitoring_namespace="monitoring")
    built = policy(spec)
    assert built is not None and all(r["ports"][0]["port"] == "http" for r in built["spec"]["ingress"])


def test_without_a_router_and_a_list_nothing_reaches_the_replicas() -> None:
    built = policy({**MODEL, "routing": {"strategy": "none"}}, network_policy=True)
    assert built is not None and built["spec"]["ingress"] == []  # the policy's own meaning: deny all
    plain = {**MODEL, "routing": {"strategy": "none"}, "networkPolicy": {"fromPodLabels": {"app": "client"}}}
    assert sources(plain, network_policy=True) == [{"podSelector": {"matchLabels": {"app": "client"}}}]


def test_the_operators_namespace_asks_a_downloads_progress_and_the_live_configs_state() -> None:
    cached = {
        "model": {"huggingFace": {"id": "org/Model-1B"}, "cache": {"size": "20Gi"}},
        "networkPolicy": {"mode": "on"},
    }
    operator = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vif-system"}}}
    assert operator in sources(cached, operator_namespace="vif-system")
    assert operator not in sources({**MODEL, "networkPolicy": {"mode": "on"}}, operator_namespace="vif-system")
    keyed = {**MODEL, "networkPolicy": {"mode": "on"}, "apiKeySecret": {"name": "keys", "key": "k"}}
    templated = {**MODEL, "networkPolicy": {"mode": "on"}, "serving": {"chatTemplate": {"name": "t", "key": "k"}}}
    assert operator in sources(keyed, operator_namespace="vif-system")  # operator/live_watch.py asks them
    assert operator in sources(templated, operator_namespace="vif-system")


def test_only_the_router_reaches_the_kv_events_of_a_kv_aware_model() -> None:
    spec = {**MODEL, "routing": {"strategy": "kv-aware"}, "networkPolicy": {"mode": "on", "fromNamespaces": ["apps"]}}
    router = {"podSelector": {"matchLabels": router_selector("chat")}}
    assert sources(spec, "kv-events", monitoring_namespace="monitoring") == [router]
    built = policy({**MODEL, "networkPolicy": {"mode": "on"}})
    assert built is not None and all(r["ports"][0]["port"] != "kv-events" for r in built["spec"]["ingress"])
