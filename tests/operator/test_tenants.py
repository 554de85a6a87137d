"""spec.tenants: the tenants file the operator writes, the volume that puts it beside each tenant's key, and the
flags of the router and the runtime (their behaviour: tests/router/test_tenants.py, integration/test_tenants.py; the
CRD's rules: integration/test_validation.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from vif.operator.builders import build_children
from vif.operator.builders.tenants import TENANTS_FILE
from vif.operator.model_ref import ModelRef
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec
from vif.runtime.router.cli import parser as router_parser
from vif.runtime.router.cli import settings_from
from vif.runtime.shared.tenants import Limits, read_tenants

MODEL = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "routing": {"replicas": 3}}
TENANTS = {
    "keys": [
        {"name": "search", "keySecret": {"name": "search-key", "key": "api-key"}, "tokensPerMinute": 200000},
        {"name": "batch", "keySecret": {"name": "batch-key"}, "concurrentRequests": 2},
    ],
    "defaults": {"requestsPerMinute": 600},
}
REDIS = OperatorSettings(redis_url="redis://redis.vif-system:6379/0")


def children(spec: dict[str, Any], settings: OperatorSettings = REDIS) -> dict[tuple[str, str], dict[str, Any]]:
    ref = ModelRef("chat", "team-a", "uid-1", InferenceModelSpec.model_validate(spec))
    return {(c["kind"], c["metadata"]["name"]): c for c in build_children(ref, settings, False)}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_file_the_operator_writes_is_the_one_the_router_reads(tmp_path: Path) -> None:
    """The ConfigMap's file, beside the keys where the projected volume puts them, read by the router's own code."""
    built = children({**MODEL, "tenants": TENANTS})
    (tmp_path / "keys").mkdir()
    volume = next(v for v in built[("Deployment", "chat-router")]["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "tenants")  # fmt: skip
    sources = volume["projected"]["sources"]
    assert sources[0]["configMap"] == {
        "name": "chat-tenants",
        "items": [{"key": "tenants.json", "path": "tenants.json"}],
    }
    for source in sources[1:]:  # each Secret's one key, at the path the file names
        (tmp_path / source["secret"]["items"][0]["path"]).write_text(f"key-of-{source['secret']['name']}")
    (tmp_path / "tenants.json").write_text(built[("ConfigMap", "chat-tenants")]["data"]["tenants.json"])
    table = read_tenants(tmp_path / "tenants.json")
    assert table.limits == {"search": Limits(600, 200000, None), "batch": Limits(600, None, 2)}
    assert sorted(table.owners.values()) == ["batch", "search"]
    assert [s["secret"]["items"][0]["key"] for s in sources[1:]] == ["api-key", "token"]


def test_the_router_enforces_with_the_operators_redis_and_the_runtime_takes_the_keys() -> None:
    routing = {"replicas": 3, "maxInFlightPerReplica": 8}
    built = children({**MODEL, "routing": routing, "tenants": {**TENANTS, "whenRedisDown": "closed"}})
    router, runtime = container(built[("Deployment", "chat-router")]), container(built[("Deployment", "chat")])
    args = router["args"]
    for flag, value in (("--tenants-file", TENANTS_FILE), ("--redis-url", REDIS.redis_url),
                        ("--redis-down", "closed"), ("--router-replicas", "3"), ("--quota-scope", "team-a/chat"),
                        ("--max-in-flight-per-replica", "3")):  # fmt: skip  # 8 places, 3 routers: 3 each
        assert args[args.index(flag) + 1] == value
    assert runtime["args"][runtime["args"].index("--tenants-file") + 1] == TENANTS_FILE
    for mounted in (router, runtime):
        assert {"name": "tenants", "mountPath": "/etc/vif-tenants", "readOnly": True} in mounted["volumeMounts"]


@pytest.mark.parametrize(("places", "routers", "share"), [(8, 1, 8), (8, 2, 4), (8, 3, 3), (1, 3, 1)])
def test_the_routers_share_each_replicas_places(places: int, routers: int, share: int) -> None:
    """Together the routers hold a replica to its places: each takes its share, rounded up (a full batch)."""
    routing = {"replicas": routers, "maxInFlightPerReplica": places}
    args = container(children({**MODEL, "routing": routing})[("Deployment", "chat-router")])["args"]
    assert args[args.index("--max-in-flight-per-replica") + 1] == str(share)


def test_without_redis_each_router_enforces_its_share_and_without_tenants_nothing_changes() -> None:
    alone = container(children({**MODEL, "tenants": TENANTS}, OperatorSettings())[("Deployment", "chat-router")])
    assert "--redis-url" not in alone["args"] and "--router-replicas" in alone["args"]
    plain = children(MODEL)
    assert ("ConfigMap", "chat-tenants") not in plain
    assert "--tenants-file" not in container(plain[("Deployment", "chat-router")])["args"]


def test_a_models_own_redis_comes_from_its_secret_and_never_shows_in_the_arguments(monkeypatch) -> None:
    own = {**TENANTS, "redisUrlSecret": {"name": "chat-redis", "key": "url"}}
    router = container(children({**MODEL, "tenants": own})[("Deployment", "chat-router")])
    assert not any("redis://" in arg for arg in router["args"])  # not the operator's either: the model's wins
    env = {e["name"]: e for e in router["env"]}
    assert env["VIF_REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "chat-redis", "key": "url"}}
    # what the router makes of the Deployment: the Secret's value, under the model's own scope
    monkeypatch.setenv("VIF_REDIS_URL", "redis://:s3cret@redis.team-a:6379/0")
    settings = settings_from(router_parser().parse_args(router["args"]))
    assert settings.redis_url == "redis://:s3cret@redis.team-a:6379/0"
    assert settings.quota_scope == "team-a/chat"


@pytest.mark.parametrize(
    ("tenants", "error"),
    [
        ({"keys": []}, "at least 1 item"),
        ({"keys": [{"name": "Search", "keySecret": {"name": "s"}}]}, "pattern"),
        ({"keys": [{"name": "a", "keySecret": {"name": "s"}, "requestsPerMinute": 0}]}, "greater than or equal to 1"),
        ({"keys": [{"name": "a", "keySecret": {"name": "s"}}], "whenRedisDown": "maybe"}, "'open' or 'closed'"),
    ],
)
def test_a_wrong_tenants_spec_is_refused(tenants: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        InferenceModelSpec.model_validate({**MODEL, "tenants": tenants})
