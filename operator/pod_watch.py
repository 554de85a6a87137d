"""A thread that asks models' pods something over HTTP every few seconds and writes what it learns into their status:
the download's progress (`downloads.py`) and whether the live configuration was taken (`live_watch.py`).

The pods are asked, not watched: what they know (bytes downloaded, a refused template) is in their memory, and the
runtime has no API access to write it anywhere. Each `check` decides from the model's body which models to ask, so
most models cost no request at all.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import urllib3

from vif.operator.apply import Cluster
from vif.operator.builders.common import RUNTIME_PORT
from vif.operator.kube_api import APIError
from vif.operator.model_runs import ModelKey
from vif.operator.watch_cache import ModelCache

log = logging.getLogger(__name__)

ASK_TIMEOUT_SECONDS = 2.0
_HTTP = urllib3.PoolManager(retries=False)  # thread-safe; one per process


def get_json(url: str, timeout: float = ASK_TIMEOUT_SECONDS) -> tuple[int, dict[str, Any] | None] | None:
    """The status and JSON object a pod answers at `url` (None for a body that is not one); None if nothing
    answers."""
    try:
        response = _HTTP.request("GET", url, timeout=timeout)
    except urllib3.exceptions.HTTPError:
        return None
    try:
        answer = json.loads(response.data) if response.data else None
    except ValueError:
        answer = None
    return response.status, answer if isinstance(answer, dict) else None


def pod_ips(pods: list[dict[str, Any]]) -> dict[str, str]:
    """Pod name -> address, of the pods that have one and are not being deleted."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return {p["metadata"]["name"]: ip for p in live if (ip := (p.get("status") or {}).get("podIP"))}


class PodWatch(ABC):
    """Every `interval` seconds, `check` each held model; an API error is logged and the model asked next round."""

    name = "pod-watch"  # the thread's name and the log lines'
    default_interval = 5.0

    def __init__(
        self,
        cluster: Cluster,
        models: ModelCache,
        converge: Callable[[ModelKey], None],
        interval: float | None = None,
        port: int = RUNTIME_PORT,
    ) -> None:
        self._cluster, self._models, self._converge = cluster, models, converge
        self._interval = self.default_interval if interval is None else interval
        self._port = port
        self._stop = threading.Event()

    def start(self) -> None:
        """Ask from a thread that carries the caller's context: the converges it triggers may be the first, and
        run in it, and kopf's event posting needs the context of its handlers."""
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._run,), name=self.name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for key in self._models.held():
                try:
                    self.check(key)
                except APIError as exc:  # asked again next round
                    log.warning("%s of %s/%s: %s", self.name, *key, exc)

    @abstractmethod
    def check(self, key: ModelKey) -> None:
        """Ask the model's pods if it is one to ask; write what changed and converge the model."""
