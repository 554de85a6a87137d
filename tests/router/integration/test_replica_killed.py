"""Two real replicas behind the real `vif-router`; one is SIGKILLed during a load run of streamed and whole
requests. Only a stream that had already started may fail: everything else is retried on the survivor."""

from __future__ import annotations

import os
import signal
import time

import httpx

from helpers.router_load import SteadyLoad
from helpers.runtime_process import RuntimeProcess

WORKERS = 4


async def test_killing_a_replica_fails_only_streams_already_started(
    replicas: list[RuntimeProcess], router: str
) -> None:
    victim = replicas[0]
    run = SteadyLoad(router, WORKERS)
    try:
        await run.wait(lambda: run.finished_after(0, ok_only=True) >= 2 * WORKERS, "answers through both replicas")
        os.killpg(victim.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # at most one request per worker was in flight at the kill: 2 x WORKERS answers after it include at least
        # WORKERS sent after it, to the survivor
        await run.wait(lambda: run.finished_after(killed_at, ok_only=True) >= 2 * WORKERS, "the survivor answering")
    finally:
        outcomes = await run.stop()
    victim.proc.wait(timeout=30)

    failed = [o for o in outcomes if not o.ok]
    assert [o for o in failed if not (o.stream and o.started)] == [], failed
    assert len(failed) <= WORKERS  # only what was streaming from the victim when it died
    metrics = httpx.get(f"{router}/metrics", timeout=5).text
    assert f'vif_router_endpoint_ready{{endpoint="{victim.base_url}"}} 0.0' in metrics
    assert f'vif_router_endpoint_ready{{endpoint="{replicas[1].base_url}"}} 1.0' in metrics
    assert 'vif_router_ejections_total{endpoint="' + victim.base_url in metrics
