"""The kopf handlers on an in-memory API: status written only when it changes, retries and their delays."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

import kopf
import pytest

from helpers.fake_kube import FakeKubeAPI, InlineExecutor, fake_cluster, model_body
from vif.operator import handlers
from vif.operator.kube_api import APIError, retry_delay
from vif.operator.model_runs import ModelRuns
from vif.operator.settings import OperatorSettings
from vif.operator.watch_cache import ModelCache

SPEC = {"model": {"path": "/models/m"}}


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> kopf.Memo:
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "warn", lambda body, reason, message: events.append(("Warning", reason)))
    monkeypatch.setattr(kopf, "event", lambda body, type, reason, message: events.append((type, reason)))
    cluster, _ = fake_cluster()
    memo = kopf.Memo(cluster=cluster, settings=OperatorSettings(), models=ModelCache(), events=events, scheduled=[])
    schedule = lambda delay, fn: memo.scheduled.append(fn)  # noqa: E731  (retries run when the test says)
    memo.runs = ModelRuns(partial(handlers.converge_latest, memo), InlineExecutor(), schedule)
    return memo


def stored_model(memo: kopf.Memo, spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    api: FakeKubeAPI = memo.cluster.api
    return api.add(model_body("chat", spec))


def test_status_is_written_once_then_only_when_it_changes(memo: kopf.Memo) -> None:
    api: FakeKubeAPI = memo.cluster.api
    handlers.converge(stored_model(memo), memo)
    assert api.calls.count(("PATCH_STATUS", "InferenceModel", "chat")) == 1
    api.calls.clear()
    handlers.converge(api.get("InferenceModel", "team", "chat") or {}, memo)
    assert ("PATCH_STATUS", "InferenceModel", "chat") not in api.calls


def test_a_failure_posts_a_warning_event(memo: kopf.Memo) -> None:
    api: FakeKubeAPI = memo.cluster.api
    api.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "namespace": "team"}})
    handlers.converge(stored_model(memo), memo)
    assert memo.events == [("Warning", "NameConflict")]


def test_model_changed_turns_a_throttle_into_a_temporary_error_with_its_retry_after(memo: kopf.Memo) -> None:
    body = stored_model(memo)
    memo.cluster.api.failures = [APIError(429, "too many requests", retry_after=7)]
    with pytest.raises(kopf.TemporaryError) as raised:
        handlers.model_changed(body=body, memo=memo, retry=0)
    assert raised.value.delay == 7


def test_child_events_retry_transient_failures_then_converge(memo: kopf.Memo) -> None:
    api: FakeKubeAPI = memo.cluster.api
    stored_model(memo)
    api.failures = [APIError(503, "unavailable"), APIError(500, "etcd timeout")]
    owner = {"uid": "model-uid", "controller": True}
    child = {"kind": "Service", "metadata": {"name": "chat", "namespace": "team", "uid": "s", "ownerReferences": [owner],
                                             "labels": {"inference.vif.dev/model": "chat"}}}  # fmt: skip
    handlers.child_changed("Service", child, "MODIFIED", memo)
    for _ in range(2):  # each failure scheduled a retry
        memo.scheduled.pop()()
    assert ("CREATE", "Deployment", "chat") in api.calls and memo.scheduled == []


def test_child_events_give_up_on_a_refusal(memo: kopf.Memo) -> None:
    api: FakeKubeAPI = memo.cluster.api
    api.failures = [APIError(403, "forbidden")]
    child = {
        "metadata": {"name": "chat", "namespace": "team", "uid": "s", "labels": {"inference.vif.dev/model": "chat"}}
    }
    handlers.child_changed("Service", child, "MODIFIED", memo)
    assert api.calls == [("GET", "InferenceModel", "chat")] and memo.scheduled == []


def test_the_initial_listing_only_fills_the_cache(memo: kopf.Memo) -> None:
    child = {
        "metadata": {"name": "chat", "namespace": "team", "uid": "s", "labels": {"inference.vif.dev/model": "chat"}}
    }
    handlers.child_changed("Service", child, None, memo)
    assert memo.cluster.api.calls == []
    assert memo.cluster.children.get("Service", "team", "chat", "chat") is not None


def test_a_deleted_model_releases_its_lock(memo: kopf.Memo) -> None:
    memo.runs.trigger(("team", "chat"))
    assert len(memo.runs) == 1
    asyncio.run(handlers.model_event(body=model_body("chat", SPEC), type="DELETED", memo=memo))
    assert len(memo.runs) == 0


def test_retry_delay_backs_off_exponentially_and_honours_retry_after() -> None:
    first, later = retry_delay(APIError(500, "x"), 0), retry_delay(APIError(500, "x"), 5)
    assert 0.5 <= first <= 1 and 16 <= later <= 32
    assert retry_delay(APIError(500, "x"), 40) <= 60
    assert retry_delay(APIError(429, "slow down", retry_after=3), 9) == 3


def test_a_pruned_child_is_reported_as_a_normal_event(memo: kopf.Memo) -> None:
    api: FakeKubeAPI = memo.cluster.api
    handlers.converge(stored_model(memo, {**SPEC, "replicas": 2}), memo)
    for (kind, _, _), obj in api.objects.items():
        memo.cluster.children.saw(kind, obj, deleted=False)
    handlers.converge(stored_model(memo, {**SPEC, "replicas": 1}), memo)
    assert memo.events == [("Normal", "Pruned")]


def test_a_later_version_in_the_cache_wins_over_kopfs_body() -> None:
    older, later = model_body("chat", SPEC), model_body("chat", {**SPEC, "replicas": 2})
    older["metadata"]["resourceVersion"], later["metadata"]["resourceVersion"] = "9", "10"
    assert handlers.newest(older, later) is later
    assert handlers.newest(later, older) is later
    assert handlers.newest(older, None) is older
    recreated = {**later, "metadata": {**later["metadata"], "uid": "another"}}
    assert handlers.newest(older, recreated) is older  # a model deleted and made again is another object


def test_late_watch_events_never_take_the_status_back(memo: kopf.Memo) -> None:
    """Seen with 40 models at once: events reached the handlers after the operator's own fresher reads and
    writes, the status went from Ready back to not ready, and a late model event hid the operator's own write."""
    api: FakeKubeAPI = memo.cluster.api
    handlers.converge(stored_model(memo), memo)
    deployment = api.objects[("Deployment", "team", "chat")]
    not_ready = json.loads(json.dumps(deployment))
    deployment["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                            "availableReplicas": 1}  # fmt: skip
    deployment["metadata"]["resourceVersion"] = "100000"
    handlers.child_changed("Deployment", deployment, "MODIFIED", memo)
    assert api.objects[("InferenceModel", "team", "chat")]["status"]["readyReplicas"] == 1
    stale_model = json.loads(json.dumps(api.objects[("InferenceModel", "team", "chat")]))
    stale_model["status"] = {}
    stale_model["metadata"]["resourceVersion"] = "1"

    handlers.child_changed("Deployment", not_ready, "MODIFIED", memo)  # the late event of the older version
    asyncio.run(handlers.model_event(body=stale_model, type="MODIFIED", memo=memo))  # and a late model event
    handlers.child_changed("Deployment", deployment, "MODIFIED", memo)
    assert api.objects[("InferenceModel", "team", "chat")]["status"]["readyReplicas"] == 1


def test_installing_kedas_crd_converges_every_model_once(memo: kopf.Memo) -> None:
    api: FakeKubeAPI = memo.cluster.api
    body = stored_model(memo, {**SPEC, "autoscaling": {"metric": "cpu"}})
    memo.models.saw(body, deleted=False)
    handlers.converge(body, memo)
    assert ("HorizontalPodAutoscaler", "team", "chat") in api.objects
    for (kind, _, _), obj in api.objects.items():
        memo.cluster.children.saw(kind, obj, deleted=False)

    crd = {"metadata": {"name": "scaledobjects.keda.sh"}}
    asyncio.run(handlers.crd_event(body=crd, type="ADDED", memo=memo))
    assert ("ScaledObject", "team", "chat") in api.objects
    assert ("HorizontalPodAutoscaler", "team", "chat") not in api.objects
    api.calls.clear()
    asyncio.run(handlers.crd_event(body=crd, type="MODIFIED", memo=memo))  # its status: nothing new
    assert api.calls == []
    terminating = {"metadata": {**crd["metadata"], "deletionTimestamp": "2025-01-01T00:00:00Z"}}
    asyncio.run(handlers.crd_event(body=terminating, type="MODIFIED", memo=memo))
    assert ("HorizontalPodAutoscaler", "team", "chat") in api.objects  # gone as soon as it is being deleted
