"""A model's download in its status (`spec.model.cache`): phase, bytes, rate and time left, and `kubectl get im`'s
Download column.

The download runs in each replica's init container (`vif-runtime fetch`), which has the model's token and no API
access; it answers `GET /progress` on the runtime's port while it runs. A `DownloadWatch` thread asks the pods of
every model that downloads and is not yet ready, every few seconds, and writes what it learns to
`status.download`; the model's converge then turns a failed download into `Degraded`/`DownloadFailed` and a Warning
event (`status.py`). Pure parts (`report`, `summary`) are apart from the thread that asks.
"""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import RUNTIME_PORT
from vif.operator.builders.model_cache import cached_source, source_of
from vif.operator.download_status import report, settled
from vif.operator.model_ref import ModelRef
from vif.operator.model_runs import ModelKey
from vif.operator.pod_watch import PodWatch, get_json, pod_ips
from vif.operator.reconcile import InvalidSpec, parse
from vif.operator.spec import KIND

INTERVAL_SECONDS = 5.0  # the bound is 10 s between refreshes


def ask(pod_ip: str, port: int = RUNTIME_PORT) -> dict[str, Any] | None:
    """What a pod says of its download: its fetch's `/progress` while that runs; once the engine listens there
    instead, `Ready` if its `/ready` says so (it loaded the model from the cache); None if nothing answers."""
    base = f"http://{pod_ip}:{port}"
    progress = get_json(f"{base}/progress")
    if progress is None:
        return None
    if progress[0] == 200:
        return progress[1]
    ready = get_json(f"{base}/ready")
    return {"phase": "Ready"} if ready is not None and ready[0] == 200 else None


class DownloadWatch(PodWatch):
    """Every `interval` seconds: for each held model that downloads (`spec.model.cache`) and whose download of its
    current source is not known to be Ready, ask its pods; when the report differs from `status.download`, write it
    and `converge` the model."""

    name = "download-watch"
    default_interval = INTERVAL_SECONDS

    def check(self, key: ModelKey) -> None:
        body = self._models.get(*key)
        ref = None if body is None else _downloading(body)
        if body is None or ref is None:
            return
        selector = ",".join(f"{k}={v}" for k, v in sorted(ref.selector().items()))
        pods = self._cluster.api.list("Pod", ref.namespace, selector)
        found = report(filter(None, (ask(ip, self._port) for ip in pod_ips(pods).values())), source_of(ref))
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
