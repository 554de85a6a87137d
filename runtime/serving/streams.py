"""Merging the engine streams of a request's several prompts into one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


async def merge(streams: Sequence[AsyncIterator[T]]) -> AsyncGenerator[tuple[int, T]]:
    """Items of several async iterators as they come, tagged with the iterator's index.

    One stream is passed through without tasks (the common case, and the hot path). Leaving early cancels the
    readers, which closes every stream and so aborts their engine requests. The queue is bounded: readers of a
    consumer that stops reading wait instead of piling up output.
    """
    if len(streams) == 1:
        async with aclosing(streams[0]) as only:  # type: ignore[type-var]
            async for item in only:
                yield 0, item
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=2 * len(streams))

    async def read(index: int, stream: AsyncIterator[T]) -> None:
        try:
            async with aclosing(stream):  # type: ignore[type-var]
                async for item in stream:
                    await queue.put((index, item))
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put((index, exc))
        await queue.put((index, _DONE))

    readers = [asyncio.create_task(read(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(readers)
        while remaining:
            index, item = await queue.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
