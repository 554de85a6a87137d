"""Faults of the operator and the control plane under it: the operator SIGKILLed halfway through 300 new models,
the API server gone for a minute, etcd restarted. Each ends with every model Ready and its children as the operator
made them: none duplicated, none orphaned or lost, no status that contradicts its Deployment.

The models' pods are kwok's (no engine runs): these faults are the operator's and the plane's, not the replicas'.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.cluster import kubectl, wait_for
from helpers.model_fleet import apply_fleet, wait_all_ready
from helpers.operator_process import OperatorProcess, running_operator
from vif.operator.names import MANAGED_BY_LABEL, MODEL_LABEL

from .conftest import Row
from .plane import Component

# What the operator makes for each model of the fleet (a router by default): the runtime's and the router's
# Deployment, the model's and the replicas' Service, the runtime's config and live ConfigMaps.
CHILDREN_PER_MODEL = {"deployments": 2, "services": 2, "configmaps": 2}
SETTLE = 600  # bounded, not timed: 300 models on two cores


@pytest.fixture
def operator(namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    with running_operator(namespace, tmp_path) as running:
        yield running


def items(kind: str, namespace: str) -> list[dict[str, Any]]:
    listed = kubectl("get", kind, "-n", namespace, "-l", f"{MANAGED_BY_LABEL}=vif-operator", "-o", "json")
    return json.loads(listed.stdout)["items"]


def children(namespace: str) -> dict[str, str]:
    """Every child the operator made, `kind/name` -> its UID (a child deleted and made again has a new one)."""
    return {f"{kind}/{c['metadata']['name']}": c["metadata"]["uid"] for kind in CHILDREN_PER_MODEL
            for c in items(kind, namespace)}  # fmt: skip


def left_behind(namespace: str, models: set[str]) -> list[str]:
    """What a fault left wrong: a model with more or fewer children than it should have, a child of no model, a
    status whose ready replicas are not its Deployment's."""
    found = []
    listed = {kind: items(kind, namespace) for kind in CHILDREN_PER_MODEL}
    for kind, per_model in CHILDREN_PER_MODEL.items():
        owners = Counter(c["metadata"]["labels"].get(MODEL_LABEL) for c in listed[kind])
        found += [f"{n} {kind} of {owner}" for owner, n in owners.items() if owner in models and n != per_model]
        found += [f"{n} orphaned {kind} of {owner}" for owner, n in owners.items() if owner not in models]
        found += [f"no {kind} of {model}" for model in models if model not in owners]
    deployments = {d["metadata"]["name"]: d for d in listed["deployments"]}
    for model in json.loads(kubectl("get", "inferencemodels", "-n", namespace, "-o", "json").stdout)["items"]:
        name, status = model["metadata"]["name"], model.get("status") or {}
        ready = (deployments.get(name, {}).get("status") or {}).get("readyReplicas", 0)
        if status.get("readyReplicas", 0) != ready:
            found.append(f"{name}: status says {status.get('readyReplicas', 0)} ready, its Deployment {ready}")
    return found


def settled(namespace: str, models: set[str]) -> list[str]:
    """`left_behind`, once it is empty or has stayed the same for 30 s: statuses trail their Deployments a moment."""
    seen: list[list[str]] = []

    def steady() -> bool:
        seen.append(left_behind(namespace, models))
        return not seen[-1] or (len(seen) > 10 and all(s == seen[-1] for s in seen[-10:]))

    wait_for(steady, "nothing left behind, or the same thing for 30 s", 300, every=3)
    return seen[-1]


def names(count: int) -> set[str]:
    return {f"m{i:04d}" for i in range(count)}


def test_the_operator_killed_halfway_through_300_models(
    namespace: str, operator: OperatorProcess, table: list[Row]
) -> None:
    count = 300
    apply_fleet(namespace, count)
    wanted = count * CHILDREN_PER_MODEL["deployments"]

    def made_so_far() -> int:
        return len(kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout.split())

    made = wait_for(lambda: (n := made_so_far()) >= wanted // 3 and n, "a third of the Deployments made", SETTLE, 0.2)
    operator.kill()
    assert made < wanted, f"the operator had made all {wanted} Deployments before the kill: nothing was halfway"
    restarted = time.monotonic()
    operator.start()
    recovered = wait_all_ready(namespace, count, restarted, SETTLE)
    problems = settled(namespace, names(count))
    fault = f"operator SIGKILLed at {made} of {wanted} Deployments of 300 new models, restarted"
    table.append(Row(fault, recovered, "; ".join(problems) or "nothing"))
    assert not problems


@pytest.mark.parametrize(("component", "seconds"), [("kube-apiserver", 60), ("etcd", 0)], ids=["api-server", "etcd"])
def test_the_operator_rides_out_the_control_plane(
    namespace: str, operator: OperatorProcess, table: list[Row], component: str, seconds: float
) -> None:
    """The API server gone for a minute, or etcd killed and started again: the operator carries on without a
    restart (a change made after it is applied), and nothing it made was deleted or made again."""
    count = 20
    apply_fleet(namespace, count)
    wait_all_ready(namespace, count, time.monotonic(), SETTLE)
    before = children(namespace)
    with Component(component).down(seconds):
        pass
    back = time.monotonic()
    kubectl("patch", "im", "m0000", "-n", namespace, "--type=merge", "-p", '{"spec": {"replicas": 2}}')

    def scaled() -> bool:
        listed = kubectl("get", "deployment", "m0000", "-n", namespace, "-o", "jsonpath={.spec.replicas}", check=False)
        return listed.stdout == "2"

    wait_for(scaled, "the change made after the fault applied", SETTLE)
    recovered = time.monotonic() - back
    assert operator.proc is not None and operator.proc.poll() is None and operator.starts == 1, "the operator restarted"
    after = children(namespace)
    problems = [f"{child} {'deleted' if child not in after else 'made again'}" for child, uid in before.items()
                if after.get(child) != uid]  # fmt: skip
    problems += settled(namespace, names(count))
    what = f"{component} killed, {'started again after 60 s' if seconds else 'started again at once'}"
    table.append(Row(what, recovered, "; ".join(problems) or "nothing"))
    assert not problems
