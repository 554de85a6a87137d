"""ASGI helpers the runtime's app and the router share: reading a whole request body within a deadline, running
work until the client disconnects, and a JSON response."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import orjson
from starlette.responses import Response
from starlette.types import Receive

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class BodyTimeout(Exception):
    """The body did not arrive within the deadline."""


class BodyTooLarge(Exception):
    """The body is larger than allowed."""


async def read_body(receive: Receive, timeout: float, max_bytes: int | None = None) -> bytes:
    """The whole request body; it must arrive within `timeout` seconds and, if given, `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BodyTooLarge
                chunks.append(chunk)
                if not message.get("more_body"):
                    return b"".join(chunks)
    except TimeoutError:
        raise BodyTimeout from None


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so aborting what it started upstream) if the client goes away first,
    which raises `ClientGone`."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientGone
    return task.result()


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")
