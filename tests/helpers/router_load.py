"""A steady load through the router: a few workers, each sending chat requests one after another, streamed and
whole in turn, each outcome recorded (what a client saw, not what the router logged)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from helpers.runtime_process import MODEL
from helpers.waits import eventually


@dataclass
class Outcome:
    stream: bool
    started: bool  # a stream that had its 200 status line: once that went out, the router never retries
    ok: bool
    detail: str = ""
    finished: float = 0.0
    sent: float = 0.0
    worker: int = -1
    url: str = ""


async def one_request(client: httpx.AsyncClient, url: str, stream: bool, i: int, max_tokens: int) -> Outcome:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Count to ten, take {i}."}],
        "max_tokens": max_tokens,
    }
    started = False
    sent = time.monotonic()
    try:
        if not stream:
            response = await client.post(f"{url}/v1/chat/completions", json=body)
            ok = response.status_code == 200 and bool(response.json()["choices"])
            return Outcome(False, False, ok, response.text[:200], time.monotonic(), sent)
        async with client.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as response:
            started = response.status_code == 200
            text = (await response.aread()).decode()
            ok = started and text.rstrip().endswith("data: [DONE]")
            return Outcome(True, started, ok, text[-200:], time.monotonic(), sent)
    except httpx.HTTPError as exc:
        return Outcome(stream, started, False, repr(exc), time.monotonic(), sent)


class SteadyLoad:
    """`workers` concurrent clients sending requests one after another in the background until stopped; the
    outcomes so far are in `outcomes`, so a test waits on what the clients saw (`wait`) rather than for a time.
    `target` is one URL, or a Service: a function giving the URLs of its ready pods at that moment, of which each
    request takes the next (an outcome's `url` says which)."""

    def __init__(
        self, target: str | Callable[[], Sequence[str]], workers: int, max_tokens: int = 24, timeout: float = 120
    ) -> None:
        self.outcomes: list[Outcome] = []
        self.stopping = False
        self.workers = workers
        self.service = (lambda: [target]) if isinstance(target, str) else target
        self.task = asyncio.gather(*(self.worker(w, max_tokens, timeout) for w in range(workers)))

    async def worker(self, w: int, max_tokens: int, timeout: float) -> None:
        """Requests one after another; `timeout` is each one's client timeout (a held request waits in it)."""
        i = 0
        async with httpx.AsyncClient(timeout=timeout) as client:
            while not self.stopping:
                urls = self.service()
                if not urls:  # a Service without a ready pod refuses the connection
                    now = time.monotonic()
                    self.outcomes.append(Outcome(False, False, False, "no ready pod", now, now, w))
                    await asyncio.sleep(0.1)
                    continue
                url = urls[(w + i) % len(urls)]
                outcome = await one_request(client, url, stream=(w + i) % 2 == 0, i=i, max_tokens=max_tokens)
                outcome.worker, outcome.url = w, url
                self.outcomes.append(outcome)
                i += 1

    def finished_after(self, moment: float, ok_only: bool = False) -> int:
        return sum(o.finished > moment and (o.ok or not ok_only) for o in self.outcomes)

    def every_worker_sent_after(self, moment: float) -> bool:
        """Each worker's request in flight at `moment` has ended (workers send one at a time): none is stuck."""
        return len({o.worker for o in self.outcomes if o.sent > moment}) == self.workers

    async def wait(self, check: Callable[[], bool], what: str, timeout: float = 120) -> None:
        await eventually(check, f"{what} (under load)", timeout, every=0.05)

    async def stop(self) -> list[Outcome]:
        """The outcomes, once every worker's request in flight has finished."""
        self.stopping = True
        await self.task
        return self.outcomes
