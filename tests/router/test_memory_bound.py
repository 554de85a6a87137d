"""A real vif-router with the operator's limits, its queue full of the largest bodies, stays within its memory
limit: held requests are bounded by count and by size, and what is over the count is refused, not kept."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from helpers.router_process import running_router
from helpers.waits import eventually
from tests.router.conftest import closed_port
from vif.operator.builders.routing import ROUTER_MAX_BODY_BYTES, ROUTER_MAX_HELD, ROUTER_MEMORY_LIMIT_BYTES

EXTRA = 8  # past the queue's count: refused at once


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert match, name
    return float(match.group(1))


async def test_a_full_queue_of_the_largest_bodies_fits_the_memory_limit(tmp_path: Path) -> None:
    limits = ("--max-pending", str(ROUTER_MAX_HELD), "--max-body-bytes", str(ROUTER_MAX_BODY_BYTES))
    nowhere = f"http://127.0.0.1:{closed_port()}"  # never ready: every request is held
    body = b'{"prompt": "' + b"x" * (ROUTER_MAX_BODY_BYTES - 64) + b'"}'
    with running_router(tmp_path, "--endpoint", nowhere, *limits, "--max-wait", "120", wait_on="/health") as url:
        pool = httpx.Limits(max_connections=ROUTER_MAX_HELD + EXTRA + 1)
        async with httpx.AsyncClient(base_url=url, timeout=180, limits=pool) as client:
            headers = {"content-type": "application/json"}
            sent = [
                asyncio.create_task(client.post("/v1/completions", content=body, headers=headers))
                for _ in range(ROUTER_MAX_HELD + EXTRA)
            ]

            async def held_and_refused() -> str | None:
                metrics = (await client.get("/metrics")).text
                refused = [t for t in sent if t.done()]
                full = gauge(metrics, "vif_router_pending_requests") == ROUTER_MAX_HELD
                return metrics if full and len(refused) == EXTRA else None

            metrics = await eventually(held_and_refused, "a full queue and the extra requests refused", timeout=120)
            assert {t.result().status_code for t in sent if t.done()} == {503}
            resident = gauge(metrics, "process_resident_memory_bytes")
            assert ROUTER_MAX_HELD * ROUTER_MAX_BODY_BYTES < resident < ROUTER_MEMORY_LIMIT_BYTES, resident / 2**20
            for task in sent:
                task.cancel()
            await asyncio.gather(*sent, return_exceptions=True)
