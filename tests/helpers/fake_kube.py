"""An in-memory stand-in for `vif.operator.kube_api.KubeAPI`, for unit tests of reconcile and the handlers.

It keeps objects by kind/namespace/name, records every call, and can be told to fail the next calls with a
given status, so the tests pin how conflicts and API failures map to outcomes and retries. It does not
pretend to be an API server: no defaulting, no field ownership; the cluster tests cover those.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from vif.operator.apply import Cluster
from vif.operator.kube_api import APIError
from vif.operator.watch_cache import ChildCache, InstalledCRDs

_uids = itertools.count(1)
_versions = itertools.count(1)  # resourceVersions: one counter, as etcd's revision


class FakeKubeAPI:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.failures: list[APIError] = []  # raised, in order, by the next calls

    def _call(self, verb: str, kind: str, name: str) -> None:
        self.calls.append((verb, kind, name))
        if self.failures:
            raise self.failures.pop(0)

    def writes(self) -> list[tuple[str, str, str]]:
        return [c for c in self.calls if c[0] != "GET"]

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("uid", f"uid-{next(_uids)}")
        stored["metadata"].setdefault("generation", 1)
        stored["metadata"]["resourceVersion"] = str(next(_versions))
        self.objects[(stored["kind"], stored["metadata"].get("namespace"), stored["metadata"]["name"])] = stored
        return copy.deepcopy(stored)

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self._call("GET", kind, name)
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def list(self, kind: str, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        self._call("LIST", kind, label_selector)
        wanted = dict(pair.split("=", 1) for pair in label_selector.split(",") if pair)
        return [copy.deepcopy(obj) for (k, ns, _), obj in self.objects.items() if k == kind and ns == namespace
                and wanted.items() <= (obj["metadata"].get("labels") or {}).items()]  # fmt: skip

    def apply(self, obj: dict[str, Any], *, force: bool, manager: str = "vif-operator") -> dict[str, Any]:
        meta = obj["metadata"]
        self._call("APPLY" if force else "CREATE", obj["kind"], meta["name"])
        key = (obj["kind"], meta.get("namespace"), meta["name"])
        existing = self.objects.get(key)
        if existing is None:
            return self.add(obj)
        if not force and existing.get("spec") != obj.get("spec", existing.get("spec")):
            raise APIError(409, "Apply failed with 1 conflict")
        merged = {**existing, **copy.deepcopy(obj)}
        merged["metadata"] = {**existing["metadata"], **copy.deepcopy(meta), "resourceVersion": str(next(_versions))}
        self.objects[key] = merged
        return copy.deepcopy(merged)

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        self._call("DELETE", kind, name)
        self.objects.pop((kind, namespace, name), None)

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self._call("PATCH_STATUS", kind, name)
        stored = self.objects[(kind, namespace, name)]
        stored["status"] = {**stored.get("status", {}), **copy.deepcopy(status)}  # a merge patch's top level
        stored["metadata"]["resourceVersion"] = str(next(_versions))
        return copy.deepcopy(stored)


def fake_cluster(crds: tuple[str, ...] = ()) -> tuple[Cluster, FakeKubeAPI]:
    api = FakeKubeAPI()
    return Cluster(api, ChildCache(), InstalledCRDs(lambda name: name in crds)), api  # type: ignore[arg-type]


def model_body(name: str, spec: dict[str, Any], namespace: str = "team", uid: str = "model-uid") -> dict[str, Any]:
    return {
        "apiVersion": "inference.vif.dev/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 1},
        "spec": spec,
    }


class InlineExecutor(Executor):
    """Runs each submitted call at once, in the caller's thread: unit tests stay deterministic."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future
