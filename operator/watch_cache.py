"""What the operator last saw of its models, their children and the CRDs it cares about, fed by kopf's watches.

Reconciles read from here instead of asking the API server, so a model whose children already match costs no
request at all. The cache is only a shortcut: a miss falls back to a GET, because kopf may run a model's
handler before the child watch has listed everything (at start-up).

The cache never steps back in time. Watch events reach kopf's handler threads late under load, while the
operator's own GETs, applies and status patches return the object as it is now; both feed the cache, and an
object older than the one held (by resourceVersion) is ignored. Without that, a late event of a Deployment
made a model's status go from Ready back to not ready, and a late event of the model hid the operator's own
status write, so the next, needed write was skipped (seen with 40 models at once).

Objects are kept as compact JSON, not as dicts: a thousand models have several thousand children, and as
Python dicts they took more memory than the chart gives the operator; a reconcile decodes only its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from vif.operator.names import MODEL_LABEL

Key = tuple[str, str]  # kind, name


def is_newer(obj: dict[str, Any], than: str | None) -> bool:
    """Whether `obj` is at least as new as the resourceVersion `than`. Kubernetes calls resourceVersions opaque;
    the API server's are etcd revisions (integers), so they are compared as such, and anything else counts as
    newer (the cache then simply follows the latest event, as before)."""
    mine = obj.get("metadata", {}).get("resourceVersion")
    if not than or not mine or not (mine.isdigit() and than.isdigit()):
        return True
    return int(mine) >= int(than)


def _pack(obj: dict[str, Any]) -> bytes:
    """The object without managedFields (large, never read here), as compact JSON."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return json.dumps({**obj, "metadata": meta}, separators=(",", ":")).encode()


class ChildCache:
    """Children by model (namespace, model label), then kind and name; safe to share between kopf's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], dict[Key, tuple[str, str, bytes]]] = {}  # (uid, resourceVersion, JSON)

    def saw(self, kind: str, obj: dict[str, Any], deleted: bool) -> None:
        meta = obj["metadata"]
        model = (meta.get("labels") or {}).get(MODEL_LABEL)
        if not model:
            return
        owner, key = (meta["namespace"], model), (kind, meta["name"])
        packed = None if deleted else _pack(obj)
        with self._lock:
            children = self._models.setdefault(owner, {})
            held = children.get(key)
            if packed is not None:
                if held is None or held[0] != meta.get("uid") or is_newer(obj, held[1]):
                    children[key] = (meta.get("uid", ""), meta.get("resourceVersion", ""), packed)
            elif held is not None and held[0] == meta.get("uid"):
                del children[key]
            if not children:
                del self._models[owner]

    def get(self, kind: str, namespace: str, model: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._models.get((namespace, model), {}).get((kind, name))
        return json.loads(found[2]) if found else None

    def of_model(self, namespace: str, model: str) -> list[tuple[str, dict[str, Any]]]:
        """Every cached child labelled with this model, as (kind, object)."""
        with self._lock:
            children = list(self._models.get((namespace, model), {}).items())
        return [(kind, json.loads(packed)) for (kind, _), (_, _, packed) in children]


class ModelCache:
    """The latest body of each model, so a child's event converges its model without a GET."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], tuple[str, str, bytes]] = {}  # (uid, resourceVersion, JSON)

    def saw(self, body: dict[str, Any], deleted: bool) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        packed = None if deleted else _pack(body)
        with self._lock:
            held = self._models.get(key)
            if packed is None:
                if held is not None and held[0] == meta.get("uid"):
                    del self._models[key]
            elif held is None or held[0] != meta.get("uid") or is_newer(body, held[1]):
                self._models[key] = (meta.get("uid", ""), meta.get("resourceVersion", ""), packed)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._models.get((namespace, name))
        return json.loads(found[2]) if found else None

    def held(self) -> list[tuple[str, str]]:
        """Every model held, as (namespace, name)."""
        with self._lock:
            return list(self._models)


class InstalledCRDs:
    """Which CRDs exist: from CRD watch events, or asked once when no event has told yet."""

    def __init__(self, ask: Callable[[str], bool]) -> None:
        self._ask = ask
        self._lock = threading.Lock()
        self._known: dict[str, bool] = {}

    def saw(self, name: str, deleted: bool) -> bool:
        """Record an event of the CRD; True when it tells something new (installed, or gone)."""
        with self._lock:
            changed = self._known.get(name) != (not deleted)
            self._known[name] = not deleted
            return changed

    def __contains__(self, name: object) -> bool:
        assert isinstance(name, str)
        with self._lock:
            if name in self._known:
                return self._known[name]
        found = self._ask(name)
        with self._lock:
            return self._known.setdefault(name, found)
