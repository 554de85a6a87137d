"""A model's download in its status (`spec.model.cache`): phase, bytes, rate and time left, and `kubectl get im`'s
Download column.

The download runs in each replica's init container (`vif-runtime fetch`), which has the model's token and no API
access; it answers `GET /progress` on the runtime's port while it runs. A `DownloadWatch` thread asks the pods of
every model that downloads and is not yet ready, every few seconds, and writes what it learns to
`status.download`; the model's converge then turns a failed download into `Degraded`/`DownloadFailed` and a Warning
event (`status.py`). Pure parts (`report`, `summary`) are apart from the thread that asks.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3

from vif.operator.apply import Cluster
from vif.operator.builders.common import RUNTIME_PORT
from vif.operator.builders.model_cache import cached_source, source_of
from vif.operator.download_status import report, settled
from vif.operator.kube_api import APIError
from vif.operator.model_ref import ModelRef
from vif.operator.model_runs import ModelKey
from vif.operator.reconcile import InvalidSpec, parse
from vif.operator.spec import KIND
from vif.operator.watch_cache import ModelCache

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 5.0  # the bound is 10 s between refreshes
ASK_TIMEOUT_SECONDS = 2.0


_HTTP = urllib3.PoolManager(retries=False)  # thread-safe; one per process


def ask(pod_ip: str, port: int = RUNTIME_PORT, timeout: float = ASK_TIMEOUT_SECONDS) -> dict[str, Any] | None:
    """What a pod says of its download: its fetch's `/progress` while that runs; once the engine listens there
    instead, `Ready` if its `/ready` says so (it loaded the model from the cache); None if nothing answers."""
    base = f"http://{pod_ip}:{port}"
    try:
        response = _HTTP.request("GET", f"{base}/progress", timeout=timeout)
        if response.status == 200:
            answer = json.loads(response.data)
            return answer if isinstance(answer, dict) else None
        ready = _HTTP.request("GET", f"{base}/ready", timeout=timeout).status == 200
    except (urllib3.exceptions.HTTPError, ValueError):
        return None
    return {"phase": "Ready"} if ready else None


class DownloadWatch:
    """Every `interval` seconds: for each held model that downloads (`spec.model.cache`) and whose download of its
    current source is not known to be Ready, ask its pods; when the report differs from `status.download`, write it
    and `converge` the model."""

    def __init__(
        self,
        cluster: Cluster,
        models: ModelCache,
        converge: Callable[[ModelKey], None],
        interval: float = INTERVAL_SECONDS,
        port: int = RUNTIME_PORT,
    ) -> None:
        self._cluster, self._models, self._converge = cluster, models, converge
        self._interval, self._port = interval, port
        self._stop = threading.Event()

    def start(self) -> None:
        """Ask from a thread that carries the caller's context: the converges it triggers may be the first, and
        run in it, and kopf's event posting needs the context of its handlers."""
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._run,), name="download-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for key in self._models.held():
                try:
                    self.check(key)
                except APIError as exc:  # asked again next round
                    log.warning("download progress of %s/%s: %s", *key, exc)

    def check(self, key: ModelKey) -> None:
        body = self._models.get(*key)
        ref = None if body is None else _downloading(body)
        if body is None or ref is None:
            return
        selector = ",".join(f"{k}={v}" for k, v in sorted(ref.selector().items()))
        pods = self._cluster.api.list("Pod", ref.namespace, selector)
        found = report(filter(None, (ask(ip, self._port) for ip in _pod_ips(pods))), source_of(ref))
        old = (body.get("status") or {}).get("download")
        if found is None or found == old or (found["phase"] == "Pending" and (old or {}).get("phase") == "Failed"):
            return  # a fetch restarted after a failure says Pending until it fails again or gets going
        if found["phase"] == "Ready":
            found = settled(old, found["source"])
        written = self._cluster.api.patch_status(KIND, ref.namespace, ref.name, {"download": found})
        self._models.saw(written, deleted=False)
        self._converge(key)


def _downloading(body: dict[str, Any]) -> ModelRef | None:
    """The model, if it downloads into a cache and that download is not known to be Ready (for its source now)."""
    if not ((body.get("spec") or {}).get("model") or {}).get("cache"):
        return None  # most models: decided without parsing the spec, every round, for each of them
    try:
        ref = parse(body)
    except InvalidSpec:
        return None
    if cached_source(ref) is None:
        return None
    download = (body.get("status") or {}).get("download") or {}
    done = download.get("phase") == "Ready" and download.get("source") == source_of(ref)
    return None if done else ref


def _pod_ips(pods: list[dict[str, Any]]) -> list[str]:
    """Pods that have an address and are not being deleted."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return [ip for p in live if (ip := (p.get("status") or {}).get("podIP"))]
