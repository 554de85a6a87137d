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


def sources(spec: dict[str, Any], **settings: Any) -> list[dict[str, Any]]:
    built = policy(spec, **settings)
    assert built is not None
    (rule,) = built["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]  # the API and /metrics share it
    return list(rule["from"])


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


def test_listed_namespaces_pods_and_the_monitoring_namespace_are_let_through() -> None:
    spec = {**MODEL, "networkPolicy": {"mode": "on", "fromNamespaces": ["apps", "monitoring"],
                                       "fromPodLabels": {"role": "batch"}}}  # fmt: skip
    by_name = "kubernetes.io/metadata.name"
    assert sources(spec, monitoring_namespace="monitoring") == [
        {"podSelector": {"matchLabels": router_selector("chat")}},
        {"namespaceSelector": {"matchLabels": {by_name: "apps"}}},
        {"namespaceSelector": {"matchLabels": {by_name: "monitoring"}}},  # once, though named twice
        {"podSelector": {"matchLabels": {"role": "batch"}}},
    ]


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
