"""The replica's lifecycle as probes and routes see it.

loading -> serving -> draining (SIGTERM: `/ready` 503, still serving) -> stopping (listener closed, in-flight
requests finishing) -> in-flight requests aborted at the shutdown deadline. Or: the engine failed to start, or
died while serving; then every request gets 503, `/health` too, and `on_fatal` makes the process exit non-zero.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from vif.runtime.engine.types import EngineClient
from vif.runtime.protocols.errors import APIError

if TYPE_CHECKING:
    from vif.runtime.serving.base import BaseServingEngine

log = logging.getLogger(__name__)
SHUTDOWN_MESSAGE = "The server is shutting down; retry the request."


class Lifecycle:
    """The engine, its serving objects, and the state of the replica."""

    def __init__(self, on_fatal: Callable[[], None] | None = None) -> None:
        self.engine: EngineClient | None = None
        self.serving: dict[str, BaseServingEngine] = {}
        self.failure: str | None = None  # why the engine cannot serve (failed to start, or died)
        self.draining = False
        self._on_fatal = on_fatal
        self._in_flight: set[asyncio.Task[object]] = set()
        self._aborted: set[asyncio.Task[object]] = set()  # cancelled by `abort_in_flight`, not yet handled

    @property
    def alive(self) -> bool:
        return self.failure is None

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.failure is None and not self.draining

    def started(self, engine: EngineClient, serving: dict[str, BaseServingEngine]) -> None:
        self.serving = serving
        self.engine = engine

    def failed(self, reason: str) -> None:
        """The engine failed to start or died: refuse everything from now on and ask the process to exit."""
        if self.failure is not None:
            return
        self.failure = reason
        log.error("the engine cannot serve: %s", reason)
        if self._on_fatal is not None:
            self._on_fatal()

    def serving_for(self, protocol: str) -> BaseServingEngine:
        """The serving object of a protocol, or the 503 that says why there is none."""
        self.serving_engine()
        return self.serving[protocol]

    def serving_engine(self) -> EngineClient:
        """The engine, or the 503 that says why it cannot serve."""
        if self.failure is not None:
            raise APIError(
                "The engine failed to start."
                if self.engine is None
                else "The engine stopped; retry on another replica.",
                status=503,
                type="service_unavailable",
                code="engine_dead",
            )
        if self.engine is None:
            raise APIError(
                "The model is still loading.",
                status=503,
                type="service_unavailable",
                code="model_not_ready",
                headers={"Retry-After": "5"},
            )
        return self.engine

    def begin_drain(self) -> None:
        if not self.draining:
            self.draining = True
            log.info("draining: /ready answers 503, requests are still served")

    @contextmanager
    def tracked(self) -> Iterator[None]:
        """Marks the current task as an in-flight request that a shutdown may have to abort."""
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            yield
        finally:
            self._in_flight.discard(task)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def abort_in_flight(self) -> None:
        """The shutdown deadline: cancel every request still running; each ends with a 503 error."""
        if self._in_flight:
            log.warning("shutdown timeout: aborting %d in-flight request(s)", len(self._in_flight))
        for task in list(self._in_flight):
            self._aborted.add(task)
            task.cancel(SHUTDOWN_MESSAGE)

    def claim_abort(self) -> bool:
        """Whether the cancellation the current task is handling is the shutdown deadline's, which a request answers
        with a 503 (an error event in a stream that started). Once only: any other cancellation, such as the
        server's own when it gives up on the request, goes on."""
        task = asyncio.current_task()
        if task in self._aborted:
            self._aborted.discard(task)
            return True
        return False

    def shutdown_error(self) -> APIError:
        return APIError(SHUTDOWN_MESSAGE, status=503, type="service_unavailable", code="shutting_down")
