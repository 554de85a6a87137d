"""The router through a fault of the control plane: with the API server gone for a minute it routes on, to the
replicas it knew, under a steady load of streamed and whole chat requests. One real replica (the engine on the
default model, run by the stand-in kubelet at its pod's address), the real operator, `vif-router --service`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import yaml

from helpers.cluster import KUBECONFIG, kubectl, wait_for
from helpers.kubelet import operating
from helpers.router_load import Outcome, SteadyLoad
from helpers.router_process import running_router
from helpers.runtime_process import MODEL

from .conftest import Row
from .plane import Component

WORKERS = 4
SPEC = {
    "model": {"path": "/models/SmolLM2-135M-Instruct"},
    "servedName": MODEL,
    "engine": {"maxModelLen": 2048, "extraArgs": ["--max-num-seqs", "8"]},
}
DOWN_SECONDS = 60


def sent_between(outcomes: list[Outcome], start: float, end: float) -> list[Outcome]:
    return [o for o in outcomes if start <= o.sent <= end]


async def test_the_router_routes_on_while_the_api_server_is_gone(
    namespace: str, tmp_path: Path, table: list[Row]
) -> None:
    with operating(namespace, tmp_path) as kubelet:
        manifest = {"apiVersion": "inference.vif.dev/v1alpha1", "kind": "InferenceModel",
                    "metadata": {"name": "chat"}, "spec": SPEC}  # fmt: skip
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))

        def serving() -> bool:
            running = kubelet.running()
            return len(running) == 1 and running[0].answers_ready()

        await asyncio.to_thread(wait_for, serving, "the replica answering", 600)
        discovery = (
            "--service",
            f"{namespace}/chat-replicas",
            "--service-port",
            "http",
            "--kubeconfig",
            str(KUBECONFIG),
        )
        with running_router(tmp_path, *discovery) as router:
            run = SteadyLoad(router, WORKERS)
            try:
                await run.wait(lambda: run.finished_after(0, ok_only=True) >= 2 * WORKERS, "answers before the fault")
                down_at = time.monotonic()

                def fault() -> None:
                    with Component("kube-apiserver").down(DOWN_SECONDS):
                        pass

                await asyncio.to_thread(fault)
                back_at = time.monotonic()
                await run.wait(lambda: run.finished_after(back_at, ok_only=True) >= 2 * WORKERS, "answers after it")
            finally:
                outcomes = await run.stop()
        replica_alive = bool(kubelet.running())

    during = sent_between(outcomes, down_at, back_at)
    failed = [o for o in during if not o.ok]
    first_ok = min(o.finished for o in outcomes if o.ok and o.finished > down_at)
    left = "nothing" if replica_alive else "the replica's process ended"
    table.append(Row(
        f"kube-apiserver killed for {DOWN_SECONDS} s under load through a router (--service discovery)",
        first_ok - down_at, left, len(during), len(failed), sum(not (o.stream and o.started) for o in failed),
    ))  # fmt: skip
    assert during, "no request was sent while the API server was down"
    assert not failed, failed[:3]
    assert replica_alive
