"""One lock per model, so two converges of the same model (its own change and a child's) never interleave.

kopf runs sync handlers in a thread pool; the registry is shared by those threads, so it has a lock of its
own. A model's lock is dropped when the model is deleted: an operator that sees thousands of models come
and go keeps no lock for each of them.
"""

from __future__ import annotations

import threading


class ModelLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def of(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def release(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
