"""kopf handlers: they decide when to reconcile and report the outcome; building and applying live elsewhere.

Every path ends in `reconcile()`: the model's own changes, and any change to a child it owns (so hand edits
are reverted and status follows rollouts at once). The child watches also feed the cache that lets a
reconcile of an unchanged model send no request at all.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from vif.operator.builders import CHILD_KINDS
from vif.operator.kube_api import KINDS, APIError, retry_delay
from vif.operator.metrics import RECONCILE_SECONDS, RECONCILES
from vif.operator.names import MANAGED, MODEL_LABEL, label_selector
from vif.operator.reconcile import reconcile
from vif.operator.spec import GROUP, KIND, PLURAL, VERSION

CHILD_EVENT_ATTEMPTS = 4
log = logging.getLogger(__name__)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Watch only the operator's own children (a server-side label selector, not every object of the cluster),
    size the handler thread pool, and post only warnings as Kubernetes events."""
    for kind in CHILD_KINDS:
        settings.watching.label_selectors[KINDS[kind].api_version, KINDS[kind].plural] = label_selector(MANAGED)
    settings.execution.max_workers = memo.workers
    settings.posting.level = logging.WARNING


def converge(body: dict[str, Any], memo: kopf.Memo) -> None:
    """Reconcile one model, write its status if it changed, and post an event when it cannot be served.

    Raises `APIError` when the API server should be asked again later.
    """
    meta = body["metadata"]
    with memo.locks.of(meta["namespace"], meta["name"]):
        with RECONCILE_SECONDS.time():
            try:
                outcome = reconcile(body, memo.cluster, memo.settings)
            except APIError:
                RECONCILES.labels("retry").inc()
                raise
        RECONCILES.labels("ok" if outcome.failure is None else outcome.failure[0]).inc()
        current = body.get("status") or {}
        if any(current.get(key) != value for key, value in outcome.status.items()):
            memo.cluster.api.patch_status(KIND, meta["namespace"], meta["name"], outcome.status)
    if outcome.failure is not None:
        kopf.warn(body, reason=outcome.failure[0], message=outcome.failure[1])
    for child in outcome.pruned:
        # kopf.event, not kopf.info: the posting level (WARNING, set above) filters kopf.info out
        kopf.event(body, type="Normal", reason="Pruned", message=f"deleted {child}, which the spec no longer asks for")


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def model_changed(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    try:
        converge(dict(body), memo)
    except APIError as exc:
        raise kopf.TemporaryError(f"API server: {exc}", delay=retry_delay(exc, retry)) from exc


@kopf.on.event(GROUP, VERSION, PLURAL)
def model_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        memo.locks.release(body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions")
def crd_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    memo.cluster.crds.saw(body["metadata"]["name"], deleted=type == "DELETED")


def child_changed(kind: str, body: kopf.Body, type: str | None, memo: kopf.Memo) -> None:
    """A managed child changed (a rollout step, a hand edit, a deletion): cache it and converge its model.

    Watching children instead of running a kopf timer also keeps kopf's finalizer off the models, so a
    model can be deleted while the operator is down. Event handlers are not retried by kopf, so a transient
    API failure is retried here, with backoff.
    """
    memo.cluster.children.saw(kind, dict(body), deleted=type == "DELETED")
    meta = body["metadata"]
    name = meta.get("labels", {}).get(MODEL_LABEL)
    if type is None or not name:  # the initial listing: `resume` handles those models
        return
    for attempt in range(CHILD_EVENT_ATTEMPTS):
        try:
            model = memo.cluster.api.get(KIND, meta["namespace"], name)
            if model is not None and not model["metadata"].get("deletionTimestamp"):
                converge(model, memo)
            return
        except APIError as exc:
            if not exc.transient or attempt == CHILD_EVENT_ATTEMPTS - 1:
                log.warning("could not converge %s/%s after a %s change: %s", meta["namespace"], name, kind, exc)
                return
            time.sleep(retry_delay(exc, attempt))


def _register_child_watch(kind: str) -> None:
    group_version, plural = KINDS[kind].api_version, KINDS[kind].plural
    group, _, version = group_version.rpartition("/")

    @kopf.on.event(group, version, plural, labels=MANAGED, id=f"child-{plural}")
    def on_child(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
        child_changed(kind, body, type, memo)


for _kind in CHILD_KINDS:
    _register_child_watch(_kind)
