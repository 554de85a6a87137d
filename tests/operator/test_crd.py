"""The CRD in crds/ is generated from the spec models, and is a structural schema Kubernetes accepts."""

from __future__ import annotations

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
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Model", "Ready", "Replicas", "Endpoint", "Age"]


def test_cel_rules_where_fields_depend_on_each_other() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    autoscaling = spec["properties"]["autoscaling"]["x-kubernetes-validations"][0]
    assert autoscaling["rule"] == "self.minReplicas <= self.maxReplicas"
    model = spec["properties"]["model"]["x-kubernetes-validations"][0]
    assert "exactly one" in model["message"]
    assert spec["required"] == ["model"]
    assert spec["properties"]["resources"]["properties"]["gpu"]["minimum"] == 0


def test_yaml_has_no_anchors() -> None:
    text = render_crd()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == build_crd()
