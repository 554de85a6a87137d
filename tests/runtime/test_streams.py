"""Merging engine streams: order, errors, and closing (which is what aborts engine requests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from vif.runtime.serving.streams import merge


async def numbers(name: str, count: int, closed: list[str], delay: float = 0.0) -> AsyncIterator[str]:
    try:
        for i in range(count):
            await asyncio.sleep(delay)
            yield f"{name}{i}"
    finally:
        closed.append(name)


async def test_merge_tags_items_with_their_stream() -> None:
    closed: list[str] = []
    items = [item async for item in merge([numbers("a", 2, closed), numbers("b", 3, closed)])]
    assert sorted(items) == [(0, "a0"), (0, "a1"), (1, "b0"), (1, "b1"), (1, "b2")]
    assert [i for _, i in items if i.startswith("b")] == ["b0", "b1", "b2"]
    assert sorted(closed) == ["a", "b"]


@pytest.mark.parametrize("streams", [1, 2])
async def test_leaving_early_closes_every_stream(streams: int) -> None:
    closed: list[str] = []
    sources = [numbers(str(i), 1000, closed, delay=0.001) for i in range(streams)]
    async with aclosing(merge(sources)) as merged:
        async for _ in merged:
            break
    assert sorted(closed) == [str(i) for i in range(streams)]


async def test_an_error_in_one_stream_reaches_the_consumer() -> None:
    async def broken() -> AsyncIterator[str]:
        yield "ok"
        raise ValueError("engine said no")

    closed: list[str] = []
    with pytest.raises(ValueError, match="engine said no"):
        async for _ in merge([broken(), numbers("slow", 1000, closed, delay=0.01)]):
            pass
    assert closed == ["slow"]
