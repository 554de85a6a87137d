"""The endpoint set: membership a watcher can replace, ejection with a cooldown, and wake-ups for held requests."""

from __future__ import annotations

import asyncio

import pytest

from vif.runtime.router.endpoints import EndpointSet, normalize_url


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_urls_are_normalized_and_checked() -> None:
    assert normalize_url(" http://10.0.0.1:8000/ ") == "http://10.0.0.1:8000"
    for bad in ("10.0.0.1:8000", "ftp://host", "http://", "http://host/?q=1"):
        with pytest.raises(ValueError):
            normalize_url(bad)


def test_static_members_start_unprobed_and_are_probed_first() -> None:
    endpoints = EndpointSet(["http://b:1", "http://a:1/"])
    assert [e.url for e in endpoints.members] == ["http://a:1", "http://b:1"]
    assert not endpoints.any_ready()
    assert endpoints.due_for_probe() == endpoints.members


def test_ejected_endpoint_waits_its_cooldown_before_a_probe() -> None:
    clock = Clock()
    endpoints = EndpointSet(["http://a:1", "http://b:1"], ready=True, clock=clock)
    a = endpoints.members[0]
    assert endpoints.eject(a, cooldown=5)
    assert not endpoints.eject(a, cooldown=5)  # already out: counted once
    assert [e.url for e in endpoints.ready()] == ["http://b:1"]
    assert endpoints.due_for_probe() == []
    clock.now += 5
    assert endpoints.due_for_probe() == [a]
    endpoints.restore(a)
    assert a.ready and len(endpoints.ready()) == 2


def test_replace_keeps_the_state_of_members_that_stay() -> None:
    endpoints = EndpointSet(["http://a:1", "http://b:1"], ready=True)
    a = endpoints.members[0]
    a.in_flight = 3
    endpoints.replace(["http://a:1", "http://c:1"], ready=True)
    assert endpoints.members[0] is a and a.in_flight == 3
    assert [e.url for e in endpoints.ready()] == ["http://a:1", "http://c:1"]
    assert endpoints.get("http://b:1") is None


def test_a_removed_endpoint_is_not_restored() -> None:
    endpoints = EndpointSet(["http://a:1"])
    a = endpoints.members[0]
    endpoints.replace([])
    endpoints.restore(a)
    assert not endpoints.any_ready()


async def test_changed_wakes_waiters_on_readiness_and_membership() -> None:
    endpoints = EndpointSet(["http://a:1"])
    waiter = asyncio.ensure_future(endpoints.changed())
    await asyncio.sleep(0)
    assert not waiter.done()
    endpoints.restore(endpoints.members[0])
    async with asyncio.timeout(1):
        await waiter
    waiter = asyncio.ensure_future(endpoints.changed())
    await asyncio.sleep(0)
    endpoints.replace(["http://a:1", "http://b:1"], ready=True)
    async with asyncio.timeout(1):
        await waiter
