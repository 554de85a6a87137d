"""A work queue of models: at most one converge per model at a time, and triggers that arrive meanwhile folded.

A model's children change several times while it comes up (created, each rollout step...). Had each child
event been a kopf sync handler, a thousand models applied at once would have queued thousands of handler
calls, each holding its event's body until a thread was free (the operator's memory grew to 600 MiB), and
each waiting for its model's lock. Instead a child's event only names its model here, from the event loop:
a model already queued or busy is marked to run once more, otherwise one task is queued for the thread pool.
The thread that runs a model converges it from the latest state the watches delivered, and again while more
triggers came in meanwhile. The model's own changes (kopf's create/update/resume handlers) call `run`, which
waits for the model, so that kopf learns whether their run failed and can retry it.

A failure worth retrying schedules the model again with backoff; the registry guards itself, and a model's
entry is dropped when the model is deleted.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from vif.operator.kube_api import APIError, retry_delay

ModelKey = tuple[str, str]  # namespace, name
log = logging.getLogger(__name__)


@dataclass
class _Run:
    lock: threading.Lock = field(default_factory=threading.Lock)
    queued: bool = False
    again: bool = False
    failures: int = 0


class ModelRuns:
    def __init__(
        self,
        converge_latest: Callable[[ModelKey], None],
        executor: Executor,
        schedule: Callable[[float, Callable[[], None]], None] | None = None,
    ) -> None:
        """`converge_latest(key)` converges a model from its latest known state (a trigger carries none);
        `schedule(delay, fn)` runs fn later (a daemon timer thread unless given)."""
        self._converge_latest = converge_latest
        self._executor = executor
        self._schedule = schedule or _later
        self._guard = threading.Lock()
        self._runs: dict[ModelKey, _Run] = {}
        self._context: contextvars.Context | None = None

    def _of(self, key: ModelKey) -> _Run:
        with self._guard:
            return self._runs.setdefault(key, _Run())

    def run(self, key: ModelKey, converge: Callable[[], None]) -> None:
        """Wait for the model, then converge it (and once more for the triggers folded meanwhile). Raises what
        `converge` raises, for the caller (kopf) to retry."""
        run = self._of(key)
        run.lock.acquire()
        self._hold(key, run, converge)

    def trigger(self, key: ModelKey) -> None:
        """Converge the model from its latest state soon; never blocks, so it is safe in the event loop.

        The work runs in the context of the first trigger (kopf's handler context: kopf.warn and kopf.event
        need it), as kopf's own executor does for sync handlers; retries come from timer threads without it.
        """
        run = self._of(key)
        with self._guard:
            if self._context is None:
                self._context = contextvars.copy_context()
            if run.queued or run.lock.locked():
                run.again = True
                return
            run.queued = True
            context = self._context.copy()
        self._executor.submit(context.run, self._work, key, run)

    def _work(self, key: ModelKey, run: _Run) -> None:
        run.lock.acquire()
        with self._guard:
            run.queued = run.again = False
        try:
            self._hold(key, run, lambda: self._converge_latest(key))
        except APIError as exc:
            # reconcile raises only what is worth retrying: a transient error, or a 404 while a CRD or namespace
            # is still appearing (a CRD's API path 404s for a moment after it is Established)
            if not (exc.transient or exc.status == 404):
                log.warning("converging %s/%s failed: %s", *key, exc)
                return
            log.info("converging %s/%s: %s; retrying", *key, exc)
            delay = retry_delay(exc, run.failures)
            run.failures += 1
            self._schedule(delay, lambda: self.trigger(key))
        except Exception:  # a bug must not silently stop this model's runs: it is logged with its traceback
            log.exception("converging %s/%s failed", *key)
        else:
            run.failures = 0

    def _hold(self, key: ModelKey, run: _Run, converge: Callable[[], None]) -> None:
        try:
            converge()
            while True:
                with self._guard:  # checked and released under the guard: a trigger is never lost in between
                    if not run.again:
                        run.lock.release()
                        return
                    run.again = False
                self._converge_latest(key)
        except BaseException:
            with self._guard:
                run.again = False
                run.lock.release()
            raise

    def release(self, key: ModelKey) -> None:
        with self._guard:
            self._runs.pop(key, None)

    def __len__(self) -> int:
        with self._guard:
            return len(self._runs)


def _later(delay: float, fn: Callable[[], None]) -> None:
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()
