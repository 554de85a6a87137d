"""Faults of a model's own pods on the local plane, under a steady load of streamed and whole chat requests through
its two router pods: a router pod SIGKILLed while the other serves, a replica frozen (SIGSTOP) for a minute, a
replica's engine SIGKILLed mid-stream. The real operator; the stand-in kubelet runs the replicas and the routers,
and starts a container that exits again, as `restartPolicy: Always` does. The three faults run in turn on one model,
so its two engines load once; each records its row."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from helpers.cluster import kubectl
from helpers.kubelet import MODEL_PODS, Container, StandInKubelet, operating
from helpers.router_load import Outcome, SteadyLoad

from .conftest import Row
from .model_pods import (
    FIRST_BYTE,
    MANIFEST,
    SETTLE,
    WORKERS,
    RouterService,
    engine_requests,
    group_gone,
    of,
    routes_to,
    serving,
    waiting,
)

FROZEN_SECONDS = 60
# Every request ends within this: a request sent to the frozen replica waits out the first-byte timeout, then is
# answered by the other replica, which may be busy; a slow answer on this machine takes well under a minute.
LONGEST = FIRST_BYTE + 60


@dataclass
class Fault:
    name: str
    at: float  # it began
    ended: float = 0.0  # the kill, or the thaw
    recovered: float = 0.0  # the part it hit serves again
    left_behind: str = "nothing"

    def touched(self, outcomes: list[Outcome]) -> list[Outcome]:
        """The requests alive while it lasted: ended after it began, sent before the part served again."""
        return [o for o in outcomes if o.finished > self.at and o.sent < self.recovered]

    def row(self, outcomes: list[Outcome]) -> Row:
        touched = self.touched(outcomes)
        failed = [o for o in touched if not o.ok]
        before = sum(not (o.stream and o.started) for o in failed)
        return Row(self.name, self.recovered - self.ended, self.left_behind, len(touched), len(failed), before)


async def test_router_and_replica_pods_fail_under_load(namespace: str, tmp_path: Path, table: list[Row]) -> None:
    faults: list[Fault] = []
    with operating(namespace, tmp_path, selector=MODEL_PODS, restart=True) as kubelet:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(MANIFEST))
        routers, replicas = await waiting(lambda: serving(kubelet), "two routers routing to two replicas")
        with RouterService(kubelet) as service:
            await waiting(lambda: len(service()) == 2, "both routers in the Service")
            outcomes = await faults_under_load(kubelet, service, routers, replicas, faults)
        # nothing left running in an engine for a client that is gone
        await waiting(lambda: all(engine_requests(r) == 0 for r in of(kubelet, "vif-runtime")), "idle engines", 60)
        assert kubelet.error is None, repr(kubelet.error)

    for fault in faults:
        table.append(fault.row(outcomes))
    killed_router, frozen, killed_engine = faults
    failed = [o for o in outcomes if not o.ok]
    # the router kill loses only what went through the killed router, sent before it answered again
    stray = [o for o in killed_router.touched(failed) if o.url != routers[0].url or o.sent > killed_router.recovered]
    assert stray == [], stray
    # a replica's faults lose only streams that had started there: everything else is retried on the other
    for fault in (frozen, killed_engine):
        assert [o for o in fault.touched(failed) if not (o.stream and o.started)] == [], fault.touched(failed)
    lost = {id(o) for f in faults for o in f.touched(failed)}
    assert [o for o in failed if id(o) not in lost] == []  # nothing fails outside the faults
    longest = max(o.finished - o.sent for o in outcomes)
    assert longest <= LONGEST, f"a request took {longest:.1f} s"
    assert [f.left_behind for f in faults] == ["nothing"] * 3


async def faults_under_load(
    kubelet: StandInKubelet,
    service: RouterService,
    routers: list[Container],
    replicas: list[Container],
    faults: list[Fault],
) -> list[Outcome]:
    """The three faults in turn under a steady load through the Service, each recorded in `faults` as it starts;
    the load's outcomes."""
    run = SteadyLoad(service, WORKERS, timeout=2 * LONGEST)
    try:
        await run.wait(lambda: run.finished_after(0, ok_only=True) >= 2 * WORKERS, "answers through both")

        # 1. A router pod SIGKILLed: the requests it holds are lost with it; the Service drops it, then takes it back.
        router = routers[0]
        pgid = router.proc.pid
        fault = Fault("a router pod SIGKILLed while two serve (restarted by the kubelet)", time.monotonic())
        faults.append(fault)
        os.killpg(pgid, signal.SIGKILL)
        fault.ended = fault.at
        await run.wait(
            lambda: any(o.ok and o.url == router.url and o.sent > fault.at for o in run.outcomes),
            "an answer through the restarted router",
            SETTLE,
        )
        fault.recovered = min(o.finished for o in run.outcomes if o.ok and o.url == router.url and o.sent > fault.at)
        if not await asyncio.to_thread(group_gone, pgid):
            fault.left_behind = "the killed router's processes"

        # 2. A replica frozen for a minute, then thawed.
        replica = replicas[0]
        fault = Fault(f"a replica frozen (SIGSTOP) for {FROZEN_SECONDS} s, then thawed", time.monotonic())
        faults.append(fault)
        os.killpg(replica.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(FROZEN_SECONDS)  # the fault's length, not a wait for a state
        finally:
            os.killpg(replica.proc.pid, signal.SIGCONT)
        fault.ended = time.monotonic()
        await waiting(lambda: all(routes_to(r, replica) for r in of(kubelet, "vif-router")), "the replica back")
        fault.recovered = time.monotonic()

        # 3. A replica's engine SIGKILLed while it runs requests: the runtime ends them and exits; restarted.
        replica = replicas[1]
        await waiting(lambda: engine_requests(replica) > 0, "requests running on the replica")
        core = next(p for p in psutil.Process(replica.proc.pid).children(recursive=True) if "EngineCore" in p.name())
        pgid = replica.proc.pid
        fault = Fault("a replica's engine SIGKILLed mid-stream (the runtime exits, restarted)", time.monotonic())
        faults.append(fault)
        core.kill()
        fault.ended = fault.at
        await waiting(
            lambda: replica.restarts == 1 and all(routes_to(r, replica) for r in of(kubelet, "vif-router")),
            "the restarted replica back in routing",
        )
        fault.recovered = time.monotonic()
        if not await asyncio.to_thread(group_gone, pgid):
            fault.left_behind = "the dead runtime's processes"
        await run.wait(lambda: run.finished_after(fault.recovered, ok_only=True) >= 2 * WORKERS, "answers after")
    finally:
        outcomes = await run.stop()
    return outcomes
