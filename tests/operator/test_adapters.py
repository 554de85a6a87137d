"""spec.adapters: LoRA adapters rendered into model_config.json and the pod, checked without a cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from helpers.model_children import own_children
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec

SETTINGS = OperatorSettings(runtime_image="registry.local/vif-runtime:test")
ADAPTERS = [
    {"name": "pirate", "path": "/opt/adapters/pirate"},
    {"name": "poet", "pvc": {"claimName": "adapters", "path": "poet/v2"}},
    {"name": "critic", "pvc": {"claimName": "adapters"}},
    {"name": "lawyer", "pvc": {"claimName": "weights", "path": "lora/lawyer"}},
    {"name": "org/chef:v1", "huggingFace": {"id": "org/chef-lora"}},
]


def children(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return own_children(spec, SETTINGS)


def test_each_source_becomes_a_folder_in_the_pod_or_an_id() -> None:
    objs = children({"model": {"pvc": {"claimName": "weights", "path": "llama"}}, "adapters": ADAPTERS})
    entry = json.loads(objs["ConfigMap"]["data"]["model_config.json"])["chat"]
    assert entry["lora_adapters"] == {
        "pirate": "/opt/adapters/pirate",
        "poet": "/models/adapters/adapters/poet/v2",
        "critic": "/models/adapters/adapters",
        "lawyer": "/models/pvc/lora/lawyer",  # the model's own PVC, mounted once
        "org/chef:v1": {"model_id": "org/chef-lora"},
    }
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [
        {"name": "model", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}},
        {"name": "adapters-0", "persistentVolumeClaim": {"claimName": "adapters", "readOnly": True}},
    ]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "adapters-0", "mountPath": "/models/adapters/adapters", "readOnly": True} in mounts
    args = pod["containers"][0]["args"]
    assert args[-4:] == ["--allowed-root", "/models/pvc", "--allowed-root", "/opt/adapters/pirate"]


def test_without_adapters_nothing_changes() -> None:
    objs = children({"model": {"path": "/models/m"}})
    assert "lora_adapters" not in json.loads(objs["ConfigMap"]["data"]["model_config.json"])["chat"]
    volumes = objs["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in volumes if v["name"].startswith("adapters-")]


def test_adapters_change_the_config_and_roll_the_pods() -> None:
    before = children({"model": {"path": "/models/m"}})["ConfigMap"]["metadata"]["name"]
    after = children({"model": {"path": "/models/m"}, "adapters": ADAPTERS[:1]})["ConfigMap"]["metadata"]["name"]
    assert before != after


def test_each_path_is_its_own_root_never_its_parent() -> None:
    adapters = [
        {"name": "a", "path": "/opt/lora/a"},
        {"name": "b", "path": "/opt/lora/b/"},
        {"name": "c", "path": "/c"},
    ]
    args = children({"model": {"path": "/models/m"}, "adapters": adapters})["Deployment"]["spec"]["template"]["spec"]
    roots = args["containers"][0]["args"][-8:][1::2]
    assert roots == ["/models", "/opt/lora/a", "/opt/lora/b", "/c"]


@pytest.mark.parametrize(
    "adapter",
    [
        {"name": "a", "path": "relative/a"},
        {"name": "a", "path": "/opt/../etc"},
        {"name": "a b", "path": "/opt/a"},
        {"name": "-a", "path": "/opt/a"},
        {"name": "a", "pvc": {"claimName": "Bad_Claim"}},
        {"name": "a", "pvc": {"claimName": "c", "path": "../x"}},
        {"name": "a", "huggingFace": {"id": "../etc"}},
        {"name": "a", "path": "/opt/a", "colour": "red"},
    ],
)
def test_bad_adapters_are_refused_by_the_schema(adapter: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        InferenceModelSpec.model_validate({"model": {"path": "/models/m"}, "adapters": [adapter]})
