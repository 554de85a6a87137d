"""Two real replicas behind the real `vif-router`; during a load run of streamed and whole requests one is frozen
(SIGSTOP) and thawed, then one is SIGKILLed. Only a stream that had already started may fail: everything else is
retried on the other replica, and no request waits on a frozen one past the router's timeouts.

The tests run in this order: the frozen replica is thawed and back in routing before the kill."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from helpers.router_load import SteadyLoad
from helpers.router_process import running_router
from helpers.runtime_process import RuntimeProcess
from helpers.waits import eventually

WORKERS = 4
FIRST_BYTE_TIMEOUT = 15.0  # well above a status line's wait on these replicas under this load (a few seconds)
IDLE_TIMEOUT = 5.0  # a started stream sends a token every few tens of milliseconds


def endpoint_ready(router: str, endpoint: str) -> bool:
    return f'vif_router_endpoint_ready{{endpoint="{endpoint}"}} 1.0' in httpx.get(f"{router}/metrics", timeout=5).text


async def test_a_frozen_replica_holds_no_request_past_the_timeouts(
    replicas: list[RuntimeProcess], tmp_path: Path
) -> None:
    victim = replicas[0]
    endpoints = (a for r in replicas for a in ("--endpoint", r.base_url))
    timeouts = ("--first-byte-timeout", str(FIRST_BYTE_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT))
    with running_router(tmp_path, "--strategy", "round-robin", "--cooldown", "1", *timeouts, *endpoints) as router:
        run = SteadyLoad(router, WORKERS)
        try:
            await run.wait(lambda: run.finished_after(0, ok_only=True) >= 2 * WORKERS, "answers through both")
            os.killpg(victim.proc.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            try:
                # every worker's request in flight at the freeze has ended, some after waiting out a timeout,
                # while the replica is still frozen
                await run.wait(lambda: run.every_worker_sent_after(frozen_at), "every worker past the freeze")
                await run.wait(
                    lambda: run.finished_after(frozen_at, ok_only=True) >= 2 * WORKERS, "the other replica answering"
                )
                assert victim.proc.poll() is None
            finally:
                os.killpg(victim.proc.pid, signal.SIGCONT)
            await eventually(lambda: endpoint_ready(router, victim.base_url), "the thawed replica probed back", 60)
            thawed_at = time.monotonic()
            await run.wait(lambda: run.finished_after(thawed_at, ok_only=True) >= 2 * WORKERS, "answers after thaw")
        finally:
            outcomes = await run.stop()
        metrics = httpx.get(f"{router}/metrics", timeout=5).text

    failed = [o for o in outcomes if not o.ok]
    assert [o for o in failed if not (o.stream and o.started)] == [], failed
    assert all("replica_stalled" in o.detail for o in failed), failed  # each ended with the router's error event
    assert len(failed) <= WORKERS  # only what was streaming from the victim when it froze
    longest = max(o.finished - o.sent for o in outcomes)
    assert longest < FIRST_BYTE_TIMEOUT + IDLE_TIMEOUT + 30, longest  # a timeout's wait and one answer, not a hang
    assert f'vif_router_ejections_total{{endpoint="{victim.base_url}",reason=' in metrics


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
