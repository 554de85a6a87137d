"""Two real replicas behind the real `vif-router`; one is sent SIGTERM during a load run, as Kubernetes does on a
scale-down or a rollout. Nothing fails: the replica serves through its drain window and finishes what it has,
then its listener closes and the router sends the rest to the survivor (a refused connection is retried)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from helpers.router_load import SteadyLoad
from helpers.runtime_process import RuntimeProcess

WORKERS = 4


async def test_a_replica_drained_under_load_fails_nothing(replicas: list[RuntimeProcess], router: str) -> None:
    victim = replicas[0]
    run = SteadyLoad(router, WORKERS)
    try:
        await run.wait(lambda: run.finished_after(0, ok_only=True) >= 2 * WORKERS, "answers through both replicas")
        os.kill(victim.proc.pid, signal.SIGTERM)  # the main process only, as the kubelet signals PID 1
        code = await asyncio.to_thread(victim.proc.wait, 60)
        exited_at = time.monotonic()
        # each worker has one request in flight at most, so 2 x WORKERS answers after the exit include at least
        # WORKERS sent after it: the survivor alone took the load
        await run.wait(lambda: run.finished_after(exited_at) >= 2 * WORKERS, "the survivor answering alone")
    finally:
        outcomes = await run.stop()

    assert [o for o in outcomes if not o.ok] == []  # every request answered, every stream finished
    assert code == 0, victim.tail()  # drained, not aborted
    console = victim.console.read_text(errors="replace")
    after_term = console.split("draining: /ready answers 503")[1]
    assert "aborting" not in after_term
    assert "POST /v1/chat/completions 200" in after_term  # it did serve through the drain
