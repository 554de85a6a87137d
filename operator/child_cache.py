"""What the operator last saw of its children and of the CRDs it cares about, fed by kopf's watch events.

Reconciles read children from here instead of asking the API server, so a model whose children already
match costs no request at all. The cache is only a shortcut: a miss falls back to a GET, because kopf may
run a model's handler before the child watch has listed everything (at start-up).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from vif.operator.names import MODEL_LABEL

Key = tuple[str, str]  # kind, name


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without managedFields: they are large and never read here."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


class ChildCache:
    """Children by model (namespace, model label), then kind and name; safe to share between kopf's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], dict[Key, dict[str, Any]]] = {}

    def saw(self, kind: str, obj: dict[str, Any], deleted: bool) -> None:
        meta = obj["metadata"]
        model = meta.get("labels", {}).get(MODEL_LABEL)
        if not model:
            return
        owner, key = (meta["namespace"], model), (kind, meta["name"])
        with self._lock:
            children = self._models.setdefault(owner, {})
            if not deleted:
                children[key] = slim(obj)
            elif children.get(key, {}).get("metadata", {}).get("uid") == meta.get("uid"):
                del children[key]
                if not children:
                    del self._models[owner]

    def get(self, kind: str, namespace: str, model: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._models.get((namespace, model), {}).get((kind, name))

    def of_model(self, namespace: str, model: str) -> list[tuple[str, dict[str, Any]]]:
        """Every cached child labelled with this model, as (kind, object)."""
        with self._lock:
            return [(kind, obj) for (kind, _), obj in self._models.get((namespace, model), {}).items()]


class InstalledCRDs:
    """Which CRDs exist: from CRD watch events, or asked once when no event has told yet."""

    def __init__(self, ask: Callable[[str], bool]) -> None:
        self._ask = ask
        self._lock = threading.Lock()
        self._known: dict[str, bool] = {}

    def saw(self, name: str, deleted: bool) -> None:
        with self._lock:
            self._known[name] = not deleted

    def __contains__(self, name: object) -> bool:
        assert isinstance(name, str)
        with self._lock:
            if name in self._known:
                return self._known[name]
        found = self._ask(name)
        with self._lock:
            return self._known.setdefault(name, found)
