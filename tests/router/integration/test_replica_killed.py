"""Two real replicas behind the real `vif-router`; one is SIGKILLed during a load run of streamed and whole
requests. Only a stream that had already started may fail: everything else is retried on the survivor."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx

from helpers.router_load import load
from helpers.runtime_process import RuntimeProcess

WORKERS = 4
BEFORE_KILL = 6.0  # seconds of load with both replicas
AFTER_KILL = 6.0


async def test_killing_a_replica_fails_only_streams_already_started(
    replicas: list[RuntimeProcess], router: str
) -> None:
    victim = replicas[0]
    start = time.monotonic()
    run = asyncio.ensure_future(load(router, until=start + BEFORE_KILL + AFTER_KILL, workers=WORKERS))
    await asyncio.sleep(BEFORE_KILL)
    os.killpg(victim.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    outcomes = await run
    victim.proc.wait(timeout=30)

    failed = [o for o in outcomes if not o.ok]
    assert [o for o in failed if not (o.stream and o.started)] == [], failed
    assert len(outcomes) >= 2 * WORKERS and sum(o.ok for o in outcomes) >= len(outcomes) - WORKERS
    assert sum(o.ok and o.finished > killed_at + 1 for o in outcomes) >= WORKERS  # the survivor took the load
    metrics = httpx.get(f"{router}/metrics", timeout=5).text
    assert f'vif_router_endpoint_ready{{endpoint="{victim.base_url}"}} 0.0' in metrics
    assert f'vif_router_endpoint_ready{{endpoint="{replicas[1].base_url}"}} 1.0' in metrics
    assert 'vif_router_ejections_total{endpoint="' + victim.base_url in metrics
