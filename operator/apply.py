"""Making a model's children match what the builders want: ownership first, no-op applies skipped, stale ones pruned.

- **Never take over.** A child is only ever changed if it does not exist or its controller is this model (by
  uid). Creation is a server-side apply without force, so an object that appeared in the meantime conflicts
  instead of being taken over.
- **Skip what already matches.** Each applied child carries the hash of the manifest that made it. A child
  whose hash matches and whose fields still hold every wanted value costs no request; a hand edit breaks the
  second test and is reverted by a forced apply.
- **Hand replicas over.** With autoscaling the Deployment manifest has no `replicas`; applied as is, server-side
  apply would drop the field and Kubernetes would default it to 1. First another field manager takes the
  current count (as Kubernetes documents for moving `replicas` to an HPA), so it is kept until the autoscaler
  (the operator's HPA, or KEDA's) acts; the operator never sets it again while one does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from vif.operator.builders import content_hash
from vif.operator.kinds import DEPLOYMENT
from vif.operator.kube_api import APIError, KubeAPI
from vif.operator.metrics import CHILD_APPLIES
from vif.operator.model_ref import ModelRef
from vif.operator.names import APPLIED_HASH, FIELD_MANAGER, controller_uid
from vif.operator.watch_cache import ChildCache, InstalledCRDs

HANDOVER_MANAGER = f"{FIELD_MANAGER}-handover"
# A child that must be gone before the one replacing it is created (same name): KEDA's admission webhook refuses
# a ScaledObject for a Deployment that another HPA scales.
REPLACES = {"ScaledObject": "HorizontalPodAutoscaler"}


@dataclass(frozen=True)
class Cluster:
    """Everything a reconcile talks to: the API, and what the watches have shown of children and CRDs."""

    api: KubeAPI
    children: ChildCache
    crds: InstalledCRDs


class NameConflict(Exception):
    """An object with a child's name exists and is not controlled by this model: it is left alone."""

    def __init__(self, kind: str, name: str, owner: str | None) -> None:
        holder = f"controlled by uid {owner}" if owner else "not created by this model"
        super().__init__(f"{kind}/{name} already exists and is {holder}; rename the model or remove the object")


def with_applied_hash(desired: dict[str, Any]) -> dict[str, Any]:
    marked = copy.deepcopy(desired)
    marked["metadata"].setdefault("annotations", {})[APPLIED_HASH] = content_hash(desired)
    return marked


def holds(wanted: Any, actual: Any) -> bool:
    """Whether `actual` has every value of `wanted` (extra fields, such as the server's defaults, are fine)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(holds(v, actual.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(wanted) == len(actual) and all(map(holds, wanted, actual))
    return wanted == actual or (isinstance(wanted, int) and str(wanted) == actual)


def key(child: dict[str, Any]) -> tuple[str, str]:
    """A child's kind and name: a model may own two of a kind (the router's Deployment and Services)."""
    return child["kind"], child["metadata"]["name"]


def current_children(
    cluster: Cluster, ref: ModelRef, desired: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any] | None]:
    """The live object for each wanted child (by `key`), after checking that none belongs to someone else."""
    found: dict[tuple[str, str], dict[str, Any] | None] = {}
    for child in desired:
        kind, name = child["kind"], child["metadata"]["name"]
        live = cluster.children.get(kind, ref.namespace, ref.name, name)
        if live is None:
            live = cluster.api.get(kind, ref.namespace, name)
            if live is not None:
                cluster.children.saw(kind, live, deleted=False)
        if live is not None and controller_uid(live) != ref.uid:
            raise NameConflict(kind, name, controller_uid(live))
        found[kind, name] = live
    return found


def sync_child(cluster: Cluster, ref: ModelRef, desired: dict[str, Any], live: dict[str, Any] | None) -> dict:
    """Make one child match `desired` and return it as the API server now has it (also kept in the cache)."""
    marked = with_applied_hash(desired)
    applied_hash = ((live or {}).get("metadata", {}).get("annotations") or {}).get(APPLIED_HASH)
    if live is not None and applied_hash == marked["metadata"]["annotations"][APPLIED_HASH] and holds(marked, live):
        CHILD_APPLIES.labels("unchanged").inc()
        return live
    CHILD_APPLIES.labels("applied").inc()
    if live is None:
        _retire_replaced(cluster, ref, marked)
        result = _create(cluster.api, ref, marked)
    else:
        if marked["kind"] == "Deployment" and "replicas" not in marked["spec"]:
            _hand_over_replicas(cluster.api, live)
        result = cluster.api.apply(marked, force=True)
    cluster.children.saw(marked["kind"], result, deleted=False)
    return result


def _create(api: KubeAPI, ref: ModelRef, marked: dict[str, Any]) -> dict[str, Any]:
    try:
        return api.apply(marked, force=False)
    except APIError as exc:
        if exc.status != 409:
            raise
    live = api.get(marked["kind"], ref.namespace, marked["metadata"]["name"])  # someone was faster: whose is it?
    if live is None or controller_uid(live) != ref.uid:
        raise NameConflict(marked["kind"], marked["metadata"]["name"], controller_uid(live or {}))
    return api.apply(marked, force=True)


def _retire_replaced(cluster: Cluster, ref: ModelRef, child: dict[str, Any]) -> None:
    """Delete this model's child that `child` replaces (`REPLACES`), if any; asked of the API server, since at
    start-up the watches may not have listed it yet. Costs a request only when the replacement is created."""
    kind, name = REPLACES.get(child["kind"]), child["metadata"]["name"]
    if kind is None:
        return
    old = cluster.children.get(kind, ref.namespace, ref.name, name) or cluster.api.get(kind, ref.namespace, name)
    if old is not None and controller_uid(old) == ref.uid:
        cluster.api.delete(kind, ref.namespace, name, old["metadata"]["uid"])
        cluster.children.saw(kind, old, deleted=True)


def _hand_over_replicas(api: KubeAPI, live: dict[str, Any]) -> None:
    meta = live["metadata"]
    patch = {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.name,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": live.get("spec", {}).get("replicas", 1)},
    }
    try:
        api.apply(patch, force=False, manager=HANDOVER_MANAGER)
    except APIError as exc:
        if exc.status != 409:  # 409: the HPA already set another count, and owns the field
            raise


def rollout_complete(deployment: dict[str, Any]) -> bool:
    """Every replica runs the current pod template and no older pod is left serving."""
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    wanted = spec.get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
    )


def mounted_configmaps(deployment: dict[str, Any]) -> set[str]:
    volumes = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
    return {v["configMap"]["name"] for v in volumes if "configMap" in v}


def prune(cluster: Cluster, ref: ModelRef, desired: list[dict[str, Any]], deployment: dict | None) -> list[str]:
    """Delete this model's children that are no longer wanted: kinds the spec dropped, and old ConfigMaps once
    no pod of the Deployment can still be using them (the rollout finished)."""
    wanted = {key(c) for c in desired}
    retired_configs_ok = deployment is not None and rollout_complete(deployment)
    in_use = mounted_configmaps(deployment or {})
    deleted = []
    for kind, obj in cluster.children.of_model(ref.namespace, ref.name):
        meta = obj["metadata"]
        if (kind, meta["name"]) in wanted or controller_uid(obj) != ref.uid:
            continue
        if kind == "ConfigMap" and (not retired_configs_ok or meta["name"] in in_use):
            continue
        cluster.api.delete(kind, ref.namespace, meta["name"], meta["uid"])
        # Forget it at once: its kind may be gone with its CRD (KEDA's ScaledObject), and then no watch says so.
        cluster.children.saw(kind, obj, deleted=True)
        deleted.append(f"{kind}/{meta['name']}")
    return deleted
