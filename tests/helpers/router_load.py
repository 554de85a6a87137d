"""A steady load through the router: a few workers, each sending chat requests one after another, streamed and
whole in turn, each outcome recorded (what a client saw, not what the router logged)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from helpers.runtime_process import MODEL


@dataclass
class Outcome:
    stream: bool
    started: bool  # a stream that had its 200 status line: once that went out, the router never retries
    ok: bool
    detail: str = ""
    finished: float = 0.0


async def one_request(client: httpx.AsyncClient, stream: bool, i: int, max_tokens: int) -> Outcome:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Count to ten, take {i}."}],
        "max_tokens": max_tokens,
    }
    started = False
    try:
        if not stream:
            response = await client.post("/v1/chat/completions", json=body)
            ok = response.status_code == 200 and bool(response.json()["choices"])
            return Outcome(False, False, ok, response.text[:200], time.monotonic())
        async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
            started = response.status_code == 200
            text = (await response.aread()).decode()
            ok = started and text.rstrip().endswith("data: [DONE]")
            return Outcome(True, started, ok, text[-200:], time.monotonic())
    except httpx.HTTPError as exc:
        return Outcome(stream, started, False, repr(exc), time.monotonic())


async def load(url: str, until: float | Callable[[], bool], workers: int, max_tokens: int = 24) -> list[Outcome]:
    """Requests from `workers` concurrent clients until the monotonic time `until`, or until `until()` is true."""
    stop = until if callable(until) else lambda: time.monotonic() >= until
    outcomes: list[Outcome] = []

    async def worker(w: int) -> None:
        i = 0
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while not stop():
                outcomes.append(await one_request(client, stream=(w + i) % 2 == 0, i=i, max_tokens=max_tokens))
                i += 1

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return outcomes
