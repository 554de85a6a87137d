"""Whether a model's replicas took its live configuration (docs/live-config.md), in `status.liveConfig`.

The runtime reloads its API keys and chat template when their Secret or ConfigMap changes, and refuses a version it
cannot use (no key, a template that does not compile), keeping the one in force. Those are the user's own objects,
which the operator neither reads nor watches; so a `LiveConfigWatch` thread asks the ready pods of every model that
names one (`apiKeySecret`, `serving.chatTemplate`) for their `GET /live-config`, every `interval` seconds, and
writes a refusal (or its end) to `status.liveConfig`; the model's converge turns a refusal into
`Degraded`/`LiveConfigRefused` and a Warning event. (The live ConfigMap the operator writes itself is checked by the
CRD's schema before it is written.)
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
from vif.operator.kube_api import APIError
from vif.operator.live_status import IN_FORCE, names_own_config, report
from vif.operator.model_runs import ModelKey
from vif.operator.reconcile import InvalidSpec, parse
from vif.operator.spec import KIND
from vif.operator.watch_cache import ModelCache

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 10.0  # the kubelet itself takes up to a minute to update a mounted Secret or ConfigMap
ASK_TIMEOUT_SECONDS = 2.0

_HTTP = urllib3.PoolManager(retries=False)  # thread-safe; one per process


def ask(pod_ip: str, port: int = RUNTIME_PORT, timeout: float = ASK_TIMEOUT_SECONDS) -> dict[str, Any] | None:
    """A pod's `/live-config` answer, or None if it does not answer."""
    try:
        response = _HTTP.request("GET", f"http://{pod_ip}:{port}/live-config", timeout=timeout)
        answer = json.loads(response.data) if response.status == 200 else None
    except (urllib3.exceptions.HTTPError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


class LiveConfigWatch:
    """Every `interval` seconds: ask the ready pods of each held model that `names_own_config`; when the report
    differs from `status.liveConfig`, write it and `converge` the model."""

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
        """From a thread that carries the caller's context, as `DownloadWatch` does (kopf's event posting)."""
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._run,), name="live-config-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for key in self._models.held():
                try:
                    self.check(key)
                except APIError as exc:  # asked again next round
                    log.warning("live configuration of %s/%s: %s", *key, exc)

    def check(self, key: ModelKey) -> None:
        body = self._models.get(*key)
        if body is None or not names_own_config(body):
            return
        try:
            ref = parse(body)
        except InvalidSpec:
            return
        selector = ",".join(f"{k}={v}" for k, v in sorted(ref.selector().items()))
        answers, pods = {}, self._cluster.api.list("Pod", ref.namespace, selector)
        for pod in pods:
            ip = (pod.get("status") or {}).get("podIP")
            if ip and not pod["metadata"].get("deletionTimestamp") and (answer := ask(ip, self._port)) is not None:
                answers[pod["metadata"]["name"]] = answer
        found = report(answers)
        old = (body.get("status") or {}).get("liveConfig") or IN_FORCE
        # no answer from pods that are starting: the last report stands; no pod at all (scaled to zero): none refuses
        if (not answers and pods) or found == old:
            return
        written = self._cluster.api.patch_status(KIND, ref.namespace, ref.name, {"liveConfig": found})
        self._models.saw(written, deleted=False)
        self._converge(key)
