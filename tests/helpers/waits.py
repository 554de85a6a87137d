"""Bounded waits for a converged state: a test polls the state it asserts on, never a fixed sleep.

The bounds are generous (a noisy 2-core CI machine is slow, not wrong); a wait that runs out fails the test with
the name of the state it waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60, every: float = 0.5) -> Any:
    """Poll until `check()` is truthy and return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


async def eventually(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]], what: str, timeout: float = 10, every: float = 0.005
) -> Any:
    """The asyncio twin of `wait_for`: `check` may be a plain or an async function."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


async def ready(client: Any) -> bool:
    """Whether an app behind an `httpx.AsyncClient` answers `/ready` with 200 (its engine has loaded)."""
    return bool((await client.get("/ready")).status_code == 200)
