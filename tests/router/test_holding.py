"""Holding: a bounded queue, a bounded wait, then OpenAI's 503 with Retry-After."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.errors import RouterError
from vif.runtime.router.holding import Holding


async def test_returns_at_once_when_a_replica_is_ready() -> None:
    await Holding(EndpointSet(["http://a:1"], ready=True), max_wait=0).wait_for_ready()


async def test_held_request_goes_on_when_a_replica_becomes_ready() -> None:
    endpoints = EndpointSet(["http://a:1"])
    holding = Holding(endpoints, max_wait=5)
    held = asyncio.ensure_future(holding.wait_for_ready())
    await asyncio.sleep(0)
    assert holding.pending == 1 and not held.done()
    endpoints.restore(endpoints.members[0])
    async with asyncio.timeout(1):
        await held
    assert holding.pending == 0


async def test_wait_ends_in_503_with_retry_after() -> None:
    holding = Holding(EndpointSet(["http://a:1"]), max_wait=0.05)
    with pytest.raises(RouterError) as raised:
        await holding.wait_for_ready()
    error = raised.value
    assert (error.status, error.code, error.headers) == (503, "no_ready_replica", {"Retry-After": "5"})
    assert orjson.loads(error.body()) == {
        "error": {"message": error.message, "type": "service_unavailable", "param": None, "code": "no_ready_replica"}
    }
    assert holding.pending == 0


async def test_full_queue_refuses_at_once() -> None:
    endpoints = EndpointSet(["http://a:1"])
    holding = Holding(endpoints, max_pending=1, max_wait=5)
    held = asyncio.ensure_future(holding.wait_for_ready())
    await asyncio.sleep(0)
    with pytest.raises(RouterError, match="already waiting"):
        await holding.wait_for_ready()
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert holding.pending == 0
