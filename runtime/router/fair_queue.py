"""Fair queueing across tenants. When this router's replicas are full, requests wait here and leave by the tokens
each tenant has been served, not in order of arrival.

A replica is full at `per_replica` requests in flight from this router (set it to the engine's batch size,
max_num_seqs). Past that, requests would queue inside vLLM, first come first served, so a tenant that sends ten
times as much would hold ten times the places ahead of everyone else. Here each tenant has a queue of its own, and
a freed place goes to the waiting tenant that has been served the fewest tokens. This is the virtual token counter
of Sheng et al., "Fairness in Serving Large Language Models" (OSDI 2024):
- a tenant's counter grows by each token it is served (the usage meter's charges), and what it was served fades
  with a half-life of `HALF_LIFE` seconds: fairness is over recent service, so a tenant's heavy use an hour ago
  does not hold it back now (a token served now weighs 2^(t/HALF_LIFE), and the weights are rescaled now and
  then, so every counter fades alike without being touched);
- a tenant that starts waiting after a quiet spell has its counter raised to the lowest among those waiting, so
  being idle banks no credit;
- between tenants with equal counters, the one with fewer requests running goes first;
- within a tenant, requests leave in order of arrival.

While no replica is ready, nothing waits here: requests go on to the holding queue, which KEDA watches to scale a
model up from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable

from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.errors import RouterError
from vif.runtime.router.holding import RETRY_AFTER_SECONDS

HALF_LIFE = 60.0  # seconds
RESCALE_AT = 2.0**64  # a token's weight past which every counter is divided down, far from a float's limits


class FairQueue:
    def __init__(
        self,
        endpoints: EndpointSet,
        per_replica: int = 0,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`per_replica`: requests in flight to one replica before the others wait (0: none ever wait here)."""
        self.endpoints = endpoints
        self.per_replica = per_replica
        self.max_wait = max_wait
        self.clock = clock
        self.epoch = clock()  # when a token weighed 1
        self.running = 0
        self.running_by: Counter[str] = Counter()
        self.queues: dict[str, deque[asyncio.Future[None]]] = {}
        self.counters: dict[str, float] = {}

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    def full(self) -> bool:
        ready = len(self.endpoints.ready())
        return bool(self.per_replica and ready) and self.running >= self.per_replica * ready

    def charge(self, tenant: str, tokens: int) -> None:
        """`tenant` was served `tokens` more."""
        weight = 2.0 ** ((self.clock() - self.epoch) / HALF_LIFE)
        if weight > RESCALE_AT:
            self.counters = {t: c / weight for t, c in self.counters.items()}
            self.epoch, weight = self.clock(), 1.0
        self.counters[tenant] = self.counters.get(tenant, 0.0) + tokens * weight

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        """A place among the requests in flight, for as long as the request runs; a 503 `RouterError` after
        `max_wait` seconds without one."""
        if self.full() or self.waiting:
            await self.wait(tenant)
        else:
            self.take(tenant)
        try:
            yield
        finally:
            self.give_back(tenant)

    def take(self, tenant: str) -> None:
        self.running += 1
        self.running_by[tenant] += 1

    def give_back(self, tenant: str) -> None:
        self.running -= 1
        self.running_by[tenant] -= 1
        if not self.running_by[tenant]:
            del self.running_by[tenant]
        self.dispatch()

    async def wait(self, tenant: str) -> None:
        queue = self.queues.get(tenant)
        if queue is None:
            floor = min((self.counters.get(t, 0.0) for t in self.queues), default=None)
            if floor is not None:
                self.counters[tenant] = max(self.counters.get(tenant, 0.0), floor)
            queue = self.queues[tenant] = deque()
        admitted = asyncio.get_running_loop().create_future()
        queue.append(admitted)
        self.dispatch()
        try:
            async with asyncio.timeout(self.max_wait):
                await asyncio.shield(admitted)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if admitted.done():  # given a place as the wait ended: take it, or give it back
                if isinstance(exc, TimeoutError):
                    return
                self.give_back(tenant)
                raise
            admitted.cancel()
            self.forget(tenant, admitted)
            if isinstance(exc, TimeoutError):
                raise RouterError(
                    f"Every replica stayed full for {self.max_wait:g} seconds.", status=503,
                    type="service_unavailable", code="replicas_full",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                ) from None  # fmt: skip
            raise

    def forget(self, tenant: str, admitted: asyncio.Future[None]) -> None:
        queue = self.queues.get(tenant)
        if queue is not None and admitted in queue:
            queue.remove(admitted)
            if not queue:
                del self.queues[tenant]

    def dispatch(self) -> None:
        """Give free places to the waiting tenants with the lowest counters."""
        while self.queues and not self.full():
            tenant = min(self.queues, key=lambda t: (self.counters.get(t, 0.0), self.running_by[t]))
            queue = self.queues[tenant]
            admitted = queue.popleft()
            if not queue:
                del self.queues[tenant]
            admitted.set_result(None)
            self.take(tenant)

    async def follow(self) -> None:
        """Hand out places as replicas become ready, for the router's lifetime."""
        while True:
            await self.endpoints.changed()
            self.dispatch()
