"""ModelRuns: one converge per model at a time; triggers that arrive meanwhile fold into one more run."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from helpers.fake_kube import InlineExecutor
from vif.operator.kube_api import APIError
from vif.operator.model_runs import ModelRuns

KEY = ("team", "chat")


def test_triggers_while_busy_fold_into_one_more_run() -> None:
    reruns: list[tuple[str, str]] = []
    runs = ModelRuns(reruns.append, InlineExecutor())
    started, proceed = threading.Event(), threading.Event()

    def slow_converge() -> None:
        started.set()
        assert proceed.wait(5)

    holder = threading.Thread(target=runs.run, args=(KEY, slow_converge))
    holder.start()
    assert started.wait(5)
    for _ in range(5):
        runs.trigger(KEY)  # returns at once: the model is busy
    assert reruns == []
    proceed.set()
    holder.join(5)
    assert reruns == [KEY]  # five triggers, one more run, by the thread that held the model


def test_a_trigger_on_an_idle_model_runs_at_once() -> None:
    reruns: list[tuple[str, str]] = []
    runs = ModelRuns(reruns.append, InlineExecutor())
    runs.trigger(KEY)
    assert reruns == [KEY]


def test_a_failed_run_frees_the_model() -> None:
    runs = ModelRuns(lambda key: None, InlineExecutor())

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        runs.run(KEY, fail)
    done: list[bool] = []
    runs.run(KEY, lambda: done.append(True))  # would block forever had the failure kept the lock
    assert done == [True]


def test_release_forgets_the_model() -> None:
    runs = ModelRuns(lambda key: None, InlineExecutor())
    runs.trigger(KEY)
    runs.trigger(("team", "other"))
    runs.release(KEY)
    assert len(runs) == 1


def failing_runs(
    failures: list[APIError],
) -> tuple[list[tuple[str, str]], list[tuple[float, Callable[[], None]]]]:
    """A model whose converge raises `failures` one by one, then succeeds; triggered once. What converged, and
    the retries scheduled (delay, the timer's function), both filled in as the test fires the timers."""
    converged: list[tuple[str, str]] = []

    def converge(key: tuple[str, str]) -> None:
        if failures:
            raise failures.pop(0)
        converged.append(key)

    scheduled: list[tuple[float, Callable[[], None]]] = []
    ModelRuns(converge, InlineExecutor(), schedule=lambda delay, fn: scheduled.append((delay, fn))).trigger(KEY)
    return converged, scheduled


def test_a_transient_failure_is_retried_later_with_a_growing_delay() -> None:
    converged, scheduled = failing_runs([APIError(503, "unavailable"), APIError(429, "slow down", retry_after=7)])
    assert converged == [] and len(scheduled) == 1 and 0.5 <= scheduled[0][0] <= 1
    scheduled.pop()[1]()  # the timer fires
    assert converged == [] and scheduled[0][0] == 7  # the server's Retry-After
    scheduled.pop()[1]()
    assert converged == [KEY] and scheduled == []


def test_a_kind_not_served_yet_is_retried() -> None:
    """A CRD's API path answers 404 for a moment after the CRD is Established: the model is converged again."""
    converged, scheduled = failing_runs([APIError(404, "404 page not found")])
    assert converged == [] and len(scheduled) == 1
    scheduled.pop()[1]()
    assert converged == [KEY]


def test_a_refusal_is_not_retried() -> None:
    scheduled: list[object] = []

    def refuse(key: tuple[str, str]) -> None:
        raise APIError(403, "forbidden")

    ModelRuns(refuse, InlineExecutor(), schedule=lambda delay, fn: scheduled.append(fn)).trigger(KEY)
    assert scheduled == []
