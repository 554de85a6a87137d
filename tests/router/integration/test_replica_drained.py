"""Two real replicas behind the real `vif-router`; one is sent SIGTERM during a load run, as Kubernetes does on a
scale-down or a rollout. Nothing fails: the replica serves through its drain window and finishes what it has,
then its listener closes and the router sends the rest to the survivor (a refused connection is retried)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from helpers.router_load import load
from helpers.runtime_process import RuntimeProcess

WORKERS = 4
BEFORE_TERM = 4.0  # seconds of load with both replicas
AFTER_TERM = 16.0  # the drain (5 s), the in-flight requests' end, the exit, then the survivor alone


async def test_a_replica_drained_under_load_fails_nothing(replicas: list[RuntimeProcess], router: str) -> None:
    victim = replicas[0]
    start = time.monotonic()
    run = asyncio.ensure_future(load(router, until=start + BEFORE_TERM + AFTER_TERM, workers=WORKERS))
    await asyncio.sleep(BEFORE_TERM)
    os.kill(victim.proc.pid, signal.SIGTERM)  # the main process only, as the kubelet signals PID 1
    code = await asyncio.to_thread(victim.proc.wait, 60)
    exited_at = time.monotonic()
    outcomes = await run

    assert [o for o in outcomes if not o.ok] == []  # every request answered, every stream finished
    assert code == 0, victim.tail()  # drained, not aborted
    console = victim.console.read_text(errors="replace")
    after_term = console.split("draining: /ready answers 503")[1]
    assert "aborting" not in after_term
    assert "POST /v1/chat/completions 200" in after_term  # it did serve through the drain
    assert sum(o.finished > exited_at for o in outcomes) >= WORKERS  # then the survivor took the load
