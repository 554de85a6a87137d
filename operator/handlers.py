"""kopf handlers: they decide when to reconcile and report the outcome; building and applying live elsewhere.

Every path ends in `reconcile()`: the model's own changes, and any change to a child it owns (so hand edits
are reverted and status follows rollouts at once). The child watches also feed the cache that lets a
reconcile of an unchanged model send no request at all.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import kopf

from vif.operator.downloads import DownloadWatch
from vif.operator.kinds import KINDS, OPTIONAL_CRDS, OWNED_KINDS
from vif.operator.kube_api import APIError, retry_delay
from vif.operator.live_watch import LiveConfigWatch
from vif.operator.metrics import RECONCILE_SECONDS, RECONCILES
from vif.operator.model_runs import ModelKey, ModelRuns
from vif.operator.names import MANAGED, MODEL_LABEL, label_selector
from vif.operator.reasons import Reason
from vif.operator.reconcile import reconcile
from vif.operator.spec import GROUP, KIND, PLURAL, VERSION
from vif.operator.watch_cache import ModelCache, is_newer


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Watch only the operator's own children (a server-side label selector, not every object of the cluster),
    size the handler thread pool, post only warnings as Kubernetes events, and start asking downloading models'
    pods for their progress and other models' pods whether they took their live configuration."""
    for kind in OWNED_KINDS:
        settings.watching.label_selectors[KINDS[kind].api_version, KINDS[kind].plural] = label_selector(MANAGED)
    settings.execution.max_workers = memo.workers
    settings.posting.level = logging.WARNING
    memo.models = ModelCache()
    memo.runs = ModelRuns(partial(converge_latest, memo), ThreadPoolExecutor(memo.workers, "converge"))
    memo.downloads = DownloadWatch(memo.cluster, memo.models, memo.runs.trigger)
    memo.downloads.start()
    memo.live_configs = LiveConfigWatch(memo.cluster, memo.models, memo.runs.trigger)
    memo.live_configs.start()


def converge(body: dict[str, Any], memo: kopf.Memo) -> None:
    """Reconcile one model, write its status if it changed, and post an event when it cannot be served.

    Raises `APIError` when the API server should be asked again later. Callers hold the model's run
    (`ModelRuns`), so two converges of one model never interleave.
    """
    meta = body["metadata"]
    with RECONCILE_SECONDS.time():
        try:
            outcome = reconcile(body, memo.cluster, memo.settings)
        except APIError:
            RECONCILES.labels("retry").inc()
            raise
    RECONCILES.labels("ok" if outcome.failure is None else outcome.failure[0]).inc()
    current = body.get("status") or {}
    if any(current.get(key) != value for key, value in outcome.status.items()):
        written = memo.cluster.api.patch_status(KIND, meta["namespace"], meta["name"], outcome.status)
        memo.models.saw(written, deleted=False)  # so the next converge compares with what is there now
    if outcome.failure is not None:
        kopf.warn(body, reason=outcome.failure[0], message=outcome.failure[1])
    for child in outcome.pruned:
        # kopf.event, not kopf.info: the posting level (WARNING, set above) filters kopf.info out
        message = f"deleted {child}, which the spec no longer asks for"
        kopf.event(body, type="Normal", reason=Reason.PRUNED, message=message)


def converge_latest(memo: kopf.Memo, key: ModelKey) -> None:
    """Converge a model from the latest body the model watch delivered (a GET if it has not yet)."""
    body = memo.models.get(*key) or memo.cluster.api.get(KIND, *key)
    if body is not None and not body["metadata"].get("deletionTimestamp"):
        converge(body, memo)


def newest(body: dict[str, Any], cached: dict[str, Any] | None) -> dict[str, Any]:
    """kopf's body, unless the cache holds a later version of the model (a later spec, or the operator's own
    status write): a converge never steps back to an older spec or compares with an older status."""
    same_model = cached is not None and cached["metadata"].get("uid") == body["metadata"].get("uid")
    if cached is not None and same_model and not is_newer(body, cached["metadata"].get("resourceVersion")):
        return cached
    return body


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def model_changed(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    latest = newest(dict(body), memo.models.get(*key))
    try:
        memo.runs.run(key, lambda: converge(latest, memo))
    except APIError as exc:
        raise kopf.TemporaryError(f"API server: {exc}", delay=retry_delay(exc, retry)) from exc


@kopf.on.event(GROUP, VERSION, PLURAL)
async def model_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Keep the latest body of each model (async, like the handlers below: no thread, nothing queued)."""
    memo.models.saw(dict(body), deleted=type == "DELETED")
    if type == "DELETED":
        memo.runs.release((body["metadata"]["namespace"], body["metadata"]["name"]))


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions")
async def crd_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Which CRDs exist. When one that shapes the models' children is installed or goes (KEDA's: a ScaledObject or
    an HPA; the Prometheus Operator's: a ServiceMonitor), every model converges again; a CRD being deleted counts
    as gone (no new objects of it are accepted)."""
    meta = body["metadata"]
    gone = type == "DELETED" or bool(meta.get("deletionTimestamp"))
    if memo.cluster.crds.saw(meta["name"], deleted=gone) and type is not None and meta["name"] in OPTIONAL_CRDS:
        for key in memo.models.held():
            memo.runs.trigger(key)


def child_changed(kind: str, body: kopf.Body, type: str | None, memo: kopf.Memo) -> None:
    """A managed child changed (a rollout step, a hand edit, a deletion): cache it and converge its model.

    Watching children instead of running a kopf timer also keeps kopf's finalizer off the models, so a
    model can be deleted while the operator is down. Only the model's name is queued (`ModelRuns`), so the
    event's body is not kept until a thread is free; retries are `ModelRuns`' too.
    """
    memo.cluster.children.saw(kind, dict(body), deleted=type == "DELETED")
    meta = body["metadata"]
    name = (meta.get("labels") or {}).get(MODEL_LABEL)
    if type is not None and name:  # not the initial listing: `resume` handles those models
        memo.runs.trigger((meta["namespace"], name))


def _register_child_watch(kind: str) -> None:
    group_version, plural = KINDS[kind].api_version, KINDS[kind].plural
    group, _, version = group_version.rpartition("/")

    @kopf.on.event(group, version, plural, labels=MANAGED, id=f"child-{plural}")
    async def on_child(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
        child_changed(kind, body, type, memo)


for _kind in OWNED_KINDS:
    _register_child_watch(_kind)
