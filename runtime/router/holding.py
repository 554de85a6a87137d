"""Holding: while no replica is ready (all ejected, still loading, or scaled to zero), a request waits in a bounded
queue for a bounded time rather than failing at once; past either bound it gets a 503 with Retry-After."""

from __future__ import annotations

import asyncio

from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.errors import RouterError

RETRY_AFTER_SECONDS = 5


class Holding:
    def __init__(self, endpoints: EndpointSet, max_pending: int = 1024, max_wait: float = 30.0) -> None:
        self.endpoints = endpoints
        self.max_pending = max_pending
        self.max_wait = max_wait
        self.pending = 0

    async def wait_for_ready(self) -> None:
        """Return as soon as some replica is ready; raise a 503 `RouterError` when the queue is full or the wait
        is over."""
        if self.endpoints.any_ready():
            return
        if self.pending >= self.max_pending:
            raise no_ready_replica(f"No replica is ready and {self.pending} requests are already waiting.")
        self.pending += 1
        try:
            async with asyncio.timeout(self.max_wait):
                while not self.endpoints.any_ready():
                    await self.endpoints.changed()
        except TimeoutError:
            raise no_ready_replica(f"No replica became ready within {self.max_wait:g} seconds.") from None
        finally:
            self.pending -= 1


def no_ready_replica(message: str) -> RouterError:
    return RouterError(
        message,
        status=503,
        type="service_unavailable",
        code="no_ready_replica",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
