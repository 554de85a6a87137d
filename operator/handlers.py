"""kopf handlers: they decide when to reconcile and report the outcome; building and applying live elsewhere.

Every path ends in `reconcile()`: the model's own changes, and any change to a child it owns (so hand edits
are reverted and status follows rollouts at once).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from vif.operator.metrics import RECONCILE_SECONDS, RECONCILES
from vif.operator.reconcile import Outcome, failure_outcome, reconcile
from vif.operator.spec import GROUP, PLURAL, VERSION

MANAGED = {"app.kubernetes.io/managed-by": "vif-operator"}


def converge(body: dict[str, Any], memo: kopf.Memo) -> None:
    """Reconcile one model, write its status, and post an event when it cannot be served.

    Child events run in kopf's thread pool; a lock per model keeps two converges of it from interleaving
    their status writes.
    """
    meta = body["metadata"]
    with memo.locks.setdefault((meta["namespace"], meta["name"]), threading.Lock()):
        outcome = _reconcile_or_failure(body, memo)
        RECONCILES.labels("ok" if outcome.failure is None else outcome.failure[0]).inc()
        memo.cluster.patch_model_status(meta["namespace"], meta["name"], outcome.status)
    if outcome.failure is not None:
        kopf.warn(body, reason=outcome.failure[0], message=outcome.failure[1])
    for child in outcome.pruned:
        kopf.info(body, reason="Pruned", message=f"deleted {child}, which the spec no longer asks for")


def _reconcile_or_failure(body: dict[str, Any], memo: kopf.Memo) -> Outcome:
    try:
        with RECONCILE_SECONDS.time():
            return reconcile(body, memo.cluster, memo.settings)
    except ResourceNotFoundError as exc:  # e.g. monitoring.serviceMonitor: on without the Prometheus Operator
        return failure_outcome(body, "KindNotInstalled", str(exc))
    except ApiException as exc:
        if exc.status in (404, 409, 429) or exc.status >= 500:  # 404: a namespace or CRD still appearing
            RECONCILES.labels("retry").inc()
            raise kopf.TemporaryError(f"API server: {exc.status} {exc.reason}", delay=5) from exc
        return failure_outcome(body, "ApplyFailed", _api_message(exc))


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def model_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    converge(dict(body), memo)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("", "v1", "configmaps", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
def child_changed(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A managed child changed (a rollout step, a hand edit, a deletion): converge its model.

    Watching children instead of running a kopf timer also keeps kopf's finalizer off the models, so a
    model can be deleted while the operator is down.
    """
    meta = body["metadata"]
    name = meta.get("labels", {}).get("inference.vif.dev/model")
    if type is None or not name:  # the initial listing: `resume` handles those models
        return
    model = memo.cluster.get_model(meta["namespace"], name)
    if model is not None and not model["metadata"].get("deletionTimestamp"):
        converge(model, memo)
