"""A real control plane (`make cluster-up`: kube-apiserver, etcd, controller manager, scheduler, kwok nodes)
and the real operator as a process. If the plane is not up, every test here fails loudly: no skips."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.autoscaling_stack import Stack, running_stack
from helpers.cluster import KUBECONFIG, fresh_namespace, get, kubectl, wait_for, with_crds
from helpers.markers import mark_folder
from helpers.operator_process import OperatorProcess, running_operator

__all__ = ["KUBECONFIG", "OperatorProcess", "get", "kubectl", "wait_for"]

REPO = Path(__file__).resolve().parents[3]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(__file__, items, pytest.mark.cluster)


def apply_model(namespace: str, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))


def model_manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "inference.vif.dev/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": spec,
    }


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == kind:
            return cond
    return None


def model_with(name: str, namespace: str, kind: str, status: str) -> dict | None:
    """The model, once its condition `kind` has `status`."""
    model = get("inferencemodel", name, namespace)
    found = condition(model, kind)
    return model if found is not None and found["status"] == status else None


def events_of(name: str, namespace: str, reason: str) -> list[dict[str, Any]]:
    """The events of object `name` with `reason`, oldest first as the API lists them."""
    items = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]


def reconciled(name: str, namespace: str) -> dict | None:
    """The model, once the operator has finished a reconciliation of its current spec: the status, written only
    after every child is applied, carries the spec's generation."""
    model = get("inferencemodel", name, namespace)
    status = (model or {}).get("status") or {}
    return model if model and status.get("observedGeneration") == model["metadata"]["generation"] else None


@pytest.fixture(scope="session")
def cluster() -> Path:
    return with_crds()


@pytest.fixture
def namespace(cluster: Path) -> Iterator[str]:
    with fresh_namespace() as name:
        yield name


@pytest.fixture
def operator_process(namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    with running_operator(namespace, tmp_path) as operator:
        yield operator


@pytest.fixture(scope="module")
def stack(cluster: Path) -> Iterator[Stack]:
    """KEDA and Prometheus beside the plane for the module's tests (built first if not cached: minutes)."""
    with running_stack() as running:
        yield running
