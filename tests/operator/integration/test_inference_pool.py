"""The InferencePool where the Gateway API Inference Extension's CRD is installed, and none where it is not.

The CRD here is a minimal one of our own writing (the extension's group, version and kind; the spec unchecked):
enough for the API server to store pools, and to prove the operator reacts to the CRD coming and going. It is
installed only inside the test and removed before and after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers.cluster import wait_established

from .conftest import OperatorProcess, apply_model, get, kubectl, model_manifest, wait_for

CRD = "inferencepools.inference.networking.k8s.io"
MINIMAL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    # a *.k8s.io group needs this annotation; the extension's own CRD carries its approval's URL
    "metadata": {"name": CRD, "annotations": {
        "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api-inference-extension"}},
    "spec": {
        "group": "inference.networking.k8s.io",
        "scope": "Namespaced",
        "names": {"plural": "inferencepools", "singular": "inferencepool", "kind": "InferencePool",
                  "listKind": "InferencePoolList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}  # fmt: skip
SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "routing": {"strategy": "least-load"}}


def uninstall() -> None:
    kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait=true")


@pytest.fixture
def pool_operator(namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    uninstall()
    op = OperatorProcess(namespace, tmp_path)
    op.start()
    yield op
    op.kill()
    uninstall()


def test_the_pool_appears_with_its_crd(namespace: str, pool_operator: OperatorProcess) -> None:
    apply_model(namespace, model_manifest("chat", SPEC))
    wait_for(lambda: get("deployment", "chat-router", namespace), "the router's Deployment")
    kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(MINIMAL_CRD))
    wait_established(CRD)
    pool = wait_for(
        lambda: get("inferencepool", "chat", namespace), "the InferencePool, with no change to the model", 180
    )
    runtime_pods = get("deployment", "chat", namespace)["spec"]["selector"]["matchLabels"]
    assert pool["spec"]["selector"]["matchLabels"] == runtime_pods  # the runtime's pods, not the router's
    assert pool["spec"]["endpointPickerRef"]["name"] == "chat-epp"
    assert pool["metadata"]["ownerReferences"][0]["kind"] == "InferenceModel"


def test_a_pool_deleted_by_hand_comes_back(namespace: str, tmp_path: Path) -> None:
    """With the CRD there from the start the operator watches pools like its other children."""
    uninstall()
    kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(MINIMAL_CRD))
    wait_established(CRD)
    op = OperatorProcess(namespace, tmp_path)
    op.start()
    try:
        apply_model(namespace, model_manifest("chat", SPEC))
        first = wait_for(lambda: get("inferencepool", "chat", namespace), "the InferencePool")
        kubectl("delete", "inferencepool", "chat", "-n", namespace, "--wait=true")
        again = wait_for(lambda: get("inferencepool", "chat", namespace), "the InferencePool made again", 120)
        assert again["metadata"]["uid"] != first["metadata"]["uid"]
        assert again["spec"] == first["spec"]
    finally:
        op.kill()
        uninstall()
