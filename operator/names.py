"""Every label, annotation key and owner reference the operator writes, in one place.

Built from the API's group/version/kind (`vif.operator.spec`), so a rename happens here only.
"""

from __future__ import annotations

from typing import Any

from vif.operator.spec import GROUP, KIND, VERSION

API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "vif-operator"

# Labels on every child, and on the pods.
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MODEL_LABEL = f"{GROUP}/model"
RUNTIME_APP = "vif-runtime"
ROUTER_APP = "vif-router"
MANAGED = {MANAGED_BY_LABEL: FIELD_MANAGER}

# Annotations.
CONFIG_HASH = f"{GROUP}/config-hash"  # on the pod template: the ConfigMap content the pods were started with
APPLIED_HASH = f"{GROUP}/applied-hash"  # on every child: the hash of the manifest the operator last applied


def selector(model: str) -> dict[str, str]:
    """The labels that pick a model's pods (Service, PDB, ServiceMonitor, status.selector)."""
    return {NAME_LABEL: RUNTIME_APP, INSTANCE_LABEL: model}


def router_selector(model: str) -> dict[str, str]:
    """The labels that pick a model's router pods (never matched by `selector`, which picks the replicas)."""
    return {NAME_LABEL: ROUTER_APP, INSTANCE_LABEL: model}


def router_labels(model: str) -> dict[str, str]:
    """Labels on the router's objects and pods: as `child_labels`, with the router's selector."""
    return {**router_selector(model), **MANAGED, MODEL_LABEL: model}


def child_labels(model: str) -> dict[str, str]:
    """Labels on every child: the selector, who manages it, and which model it belongs to."""
    return {**selector(model), **MANAGED, MODEL_LABEL: model}


def label_selector(labels: dict[str, str]) -> str:
    """`k=v,k=v` as the API server's labelSelector parameter and status.selector spell it."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def owner_reference(model: str, uid: str) -> dict[str, Any]:
    """The controller reference that makes deleting the model delete its children."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": model,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: dict[str, Any]) -> str | None:
    """The uid of the object's controller (an owner reference with controller: true), if any."""
    for owner in obj.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("controller"):
            return owner.get("uid")
    return None
