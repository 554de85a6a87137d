"""The InferencePool (Gateway API Inference Extension): built from the spec, made only where its CRD exists."""

from __future__ import annotations

from typing import Any

from helpers.fake_kube import fake_cluster, model_body
from vif.operator.builders.inference_pool import build_inference_pool
from vif.operator.kinds import INFERENCE_POOL
from vif.operator.model_ref import ModelRef
from vif.operator.reconcile import reconcile
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}
SETTINGS = OperatorSettings(runtime_image="vif-runtime:test")


def ref_of(spec: dict[str, Any]) -> ModelRef:
    return ModelRef("chat", "team", "uid-1", InferenceModelSpec.model_validate(spec))


def test_the_pool_selects_the_runtime_pods_and_names_the_endpoint_picker() -> None:
    ref = ref_of({**SPEC, "routing": {"replicas": 2}})
    pool = build_inference_pool(ref)
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1" and pool["kind"] == "InferencePool"
    assert pool["spec"] == {
        "selector": {"matchLabels": ref.selector()},  # the runtime's pods, never the router's
        "targetPorts": [{"number": 8000}],
        "endpointPickerRef": {"kind": "Service", "name": "chat-epp", "port": {"number": 9002}},
    }
    named = build_inference_pool(
        ref_of({**SPEC, "inferencePool": {"endpointPicker": "shared-epp", "endpointPickerPort": 9102}})
    )
    assert named["spec"]["endpointPickerRef"]["name"] == "shared-epp"
    assert named["spec"]["endpointPickerRef"]["port"] == {"number": 9102}


def pools(crds: tuple[str, ...], spec: dict[str, Any]) -> tuple[list[str], Any]:
    cluster, api = fake_cluster(crds)
    outcome = reconcile(model_body("chat", spec), cluster, SETTINGS)
    return [name for (kind, _, name) in api.objects if kind == "InferencePool"], outcome


def test_auto_makes_a_pool_only_where_the_crd_is_installed() -> None:
    assert pools((INFERENCE_POOL.crd,), SPEC)[0] == ["chat"]
    assert pools((), SPEC)[0] == []
    assert pools((INFERENCE_POOL.crd,), {**SPEC, "inferencePool": {"mode": "off"}})[0] == []


def test_on_without_the_crd_says_what_is_missing() -> None:
    made, outcome = pools((), {**SPEC, "inferencePool": {"mode": "on"}})
    assert made == [] and outcome.failure is not None
    reason, message = outcome.failure
    assert reason == "KindNotInstalled" and INFERENCE_POOL.crd in message
