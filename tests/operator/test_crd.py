"""The CRD in crds/ is generated from the spec models, and is a structural schema Kubernetes accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from vif.operator.crd import CRD_FILE, build_crd, render_crd

REPO = Path(__file__).resolve().parents[2]


def walk(node: Any, path: str = "") -> list[tuple[str, str, Any]]:
    found: list[tuple[str, str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((path, key, value))
            found += walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += walk(value, f"{path}[{i}]")
    return found


def test_crd_file_matches_the_spec_models() -> None:
    committed = (REPO / "crds" / CRD_FILE).read_text()
    assert committed == render_crd(), "crds/ is stale: run `make crds`"


def test_schema_is_structural() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    keys = {key for _, key, _ in walk(schema)}
    assert not keys & {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title"}
    for path, key, value in walk(schema):
        if key in {"exclusiveMinimum", "exclusiveMaximum"}:
            assert value is True, path
        if key == "default":
            assert value is not None, path


def test_names_subresources_and_columns() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "inferencemodels.inference.vif.dev"
    assert crd["spec"]["names"]["shortNames"] == ["im"] and crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Model", "Ready", "Replicas", "Endpoint", "Download",
                                                                      "Age"]  # fmt: skip


def test_cel_rules_where_fields_depend_on_each_other() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    autoscaling = spec["properties"]["autoscaling"]["x-kubernetes-validations"][0]
    assert autoscaling["rule"] == "self.minReplicas <= self.maxReplicas"
    model = spec["properties"]["model"]["x-kubernetes-validations"][0]
    assert "exactly one" in model["message"]
    assert spec["required"] == ["model"]
    assert spec["properties"]["resources"]["properties"]["gpu"]["minimum"] == 0


def test_cel_rules_that_span_several_fields() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    messages = [r["message"] for r in spec["x-kubernetes-validations"]]
    assert messages == [
        "engine.tensorParallelSize must not exceed resources.gpu: each tensor-parallel worker needs a GPU",
        "tenants need the router (routing.strategy other than none): it enforces their limits",
        "tenants.keys: the name default is apiKeySecret's keys' tenant",
        "engine.gpuMemoryUtilization is set but resources.gpu is 0 (a CPU model)",
    ]


def test_names_must_make_valid_child_names() -> None:
    """The model's name becomes its Service's: a DNS-1035 label, checked at admission on metadata.name."""
    root = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rule, routed, _ = root["x-kubernetes-validations"]
    assert "self.metadata.name.size() <= 63" in rule["rule"]
    assert "self.metadata.name.size() <= 54" in routed["rule"] and "spec.routing" in routed["rule"]
    assert len(f"{'a' * 54}-replicas") == 63  # the router's Service of the replicas, a DNS-1035 label
    found = re.search(r"matches\('(.+)'\)", rule["rule"])
    assert found is not None
    for name in ("chat", "smollm2-135m", "a" * 63):
        assert re.fullmatch(found.group(1), name), name
    for name in ("my.model", "1chat", "chat-", "Chat"):
        assert not re.fullmatch(found.group(1), name), name
    assert len(f"{'a' * 63}-config-{'0' * 10}") <= 253  # the content-hashed ConfigMap, a DNS subdomain


def test_adapters_have_unique_names_and_one_source_each() -> None:
    root = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    adapters = root["properties"]["spec"]["properties"]["adapters"]
    assert (adapters["x-kubernetes-list-type"], adapters["x-kubernetes-list-map-keys"]) == ("map", ["name"])
    assert adapters["maxItems"] == 32 and adapters["items"]["required"] == ["name"]
    (one_source,) = adapters["items"]["x-kubernetes-validations"]
    assert one_source["message"] == "set exactly one of path, pvc and huggingFace in each of adapters"
    name_rule = root["x-kubernetes-validations"][2]
    assert "self.spec.servedName : self.metadata.name" in name_rule["rule"]


def test_yaml_has_no_anchors() -> None:
    text = render_crd()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == build_crd()
