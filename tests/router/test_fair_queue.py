"""The fair queue (`fair_queue.py`): who leaves first when the replicas are full, what a wait costs, and where an
admitted request goes."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from tests.router.conftest import WAIT, StartReplica, StartRouter, wait_until
from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.errors import RouterError
from vif.runtime.router.fair_queue import HALF_LIFE, FairQueue


def one_replica(per_replica: int = 1, max_wait: float = 30.0) -> FairQueue:
    return FairQueue(EndpointSet(["http://replica:8000"], ready=True), per_replica, max_wait)


async def test_a_freed_place_goes_to_the_tenant_served_least() -> None:
    fair = one_replica(per_replica=2)
    fair.charge("busy", 5000)
    entered: list[str] = []
    async with fair.slot("busy"), fair.slot("quiet"):  # both have one running: neither may take the reserve
        waiting = [asyncio.create_task(_enter(fair, t, entered)) for t in ("busy", "busy", "quiet")]
        await wait_until(lambda: fair.waiting == 3)
        assert fair.counters["quiet"] == fair.counters["busy"]  # raised to the lowest waiting: idle banks no credit
        fair.charge("busy", 40)  # the running request's tokens, as they stream
    await wait_until(lambda: len(entered) == 2)
    assert entered == ["quiet", "busy"]  # quiet came last and left first
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert (fair.running, fair.waiting, fair.queues) == (0, 0, {})


async def test_at_equal_counters_the_tenant_with_fewer_running_goes_first() -> None:
    fair = one_replica(per_replica=4)
    entered: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        for tenant in ("busy", "busy", "quiet"):
            await stack.enter_async_context(fair.slot(tenant))
        async with fair.slot("busy"):
            waits = [asyncio.create_task(_enter(fair, t, entered)) for t in ("busy", "quiet")]
            await wait_until(lambda: fair.waiting == 2)
        await wait_until(lambda: len(entered) == 1)
        assert entered == ["quiet"]  # the place freed: busy still runs two, quiet one
    for task in waits:
        task.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    assert (fair.running, fair.waiting, fair.running_by) == (0, 0, {})  # cancelled requests leave no trace


async def _enter(fair: FairQueue, tenant: str, entered: list[str] | None = None) -> None:
    async with fair.slot(tenant):
        if entered is not None:
            entered.append(tenant)
        await asyncio.sleep(3600)


async def test_a_wait_past_max_wait_is_a_503_and_leaves_the_queue() -> None:
    fair = one_replica(max_wait=0.05)
    async with fair.slot("a"):
        with pytest.raises(RouterError) as refused:
            async with fair.slot("a"):  # one running already: not the reserved place
                pass
    assert refused.value.status == 503 and refused.value.code == "replicas_full"
    assert refused.value.headers["Retry-After"] == "5"
    assert (fair.running, fair.waiting) == (0, 0)


async def test_off_or_without_a_ready_replica_nothing_waits_here() -> None:
    """With no replica ready the holding queue waits instead (KEDA scales from zero on its count)."""
    for fair in (
        FairQueue(EndpointSet(["http://r:8000"], ready=True), 0),
        FairQueue(EndpointSet(["http://r:8000"]), 1),
    ):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(5):
                await stack.enter_async_context(fair.slot("a"))
            assert (fair.running, fair.waiting) == (5, 0)


async def test_places_grow_with_the_ready_replicas() -> None:
    endpoints = EndpointSet(["http://a:8000", "http://b:8000"], ready=False)
    fair = FairQueue(endpoints, per_replica=1)
    endpoints.restore(endpoints.members[0])
    follow = asyncio.create_task(fair.follow())
    async with fair.slot("a"):
        second = asyncio.create_task(_enter(fair, "a"))
        await wait_until(lambda: fair.waiting == 1)
        endpoints.restore(endpoints.members[1])  # a second replica ready: a second place
        await wait_until(lambda: fair.running == 2 and fair.waiting == 0)
        second.cancel()
    follow.cancel()
    await asyncio.gather(second, follow, return_exceptions=True)
    assert fair.running == 0


def test_what_a_tenant_was_served_fades_with_a_half_life() -> None:
    now = [0.0]
    fair = FairQueue(EndpointSet(), clock=lambda: now[0])
    fair.charge("old", 1000)
    now[0] = 2 * HALF_LIFE
    fair.charge("new", 300)  # two half-lives later, 300 tokens outweigh 1,000 then
    assert fair.counters["new"] / fair.counters["old"] == pytest.approx(1.2)
    now[0] = 70 * HALF_LIFE  # the weights are rescaled before they grow too large; the order stays
    fair.charge("new", 1)
    assert fair.counters["new"] > fair.counters["old"] and max(fair.counters.values()) < 2.0**64


async def test_with_a_fair_queue_a_request_takes_the_free_place_not_its_keys_busy_replica(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    """One place per replica. The fair queue admits the second request because one place is free; prefix-hash would
    send it after the first (same key, within its load bound), to queue inside that engine. It goes to the free one."""
    a, served_a = await start_replica("a", events=asyncio.Queue())
    b, served_b = await start_replica("b", events=asyncio.Queue())
    url, _ = await start_router([served_a.url, served_b.url], max_in_flight_per_replica=1)
    body = {"model": "m", "messages": [{"role": "user", "content": "Hello"}], "stream": True}
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        first = asyncio.create_task(client.post("/v1/chat/completions", json=body))
        await wait_until(lambda: len(a.seen) + len(b.seen) == 1)
        second = asyncio.create_task(client.post("/v1/chat/completions", json=body))
        await wait_until(lambda: len(a.seen) + len(b.seen) == 2)
        assert (len(a.seen), len(b.seen)) == (1, 1)
        for replica in (a, b):
            assert replica.events is not None
            replica.events.put_nowait(None)
        assert (await first).status_code == 200 and (await second).status_code == 200
