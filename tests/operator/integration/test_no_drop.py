"""Nothing dropped while a routed model's pods change, on the local plane with the real engine: the model's runtime
pods run here (tests/helpers/kubelet.py), the real router follows the model's EndpointSlices as its pod would, and a
steady load of streamed and whole chat requests goes through it while the model is scaled from 3 replicas to 1,
rolled to a new spec, and scaled to 0 and back. Every request is answered, every stream finished, and every pod that
went drained and exited 0.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from helpers.cluster import KUBECONFIG, get, kubectl, wait_for
from helpers.exposition import metric
from helpers.kubelet import Container, StandInKubelet, routed_pod_ips
from helpers.operator_process import OperatorProcess
from helpers.router_load import Outcome, SteadyLoad
from helpers.router_process import running_router
from helpers.runtime_process import MODEL

from .conftest import apply_model, model_manifest

SPEC = {
    "model": {"path": "/models/SmolLM2-135M-Instruct"},
    "servedName": MODEL,
    # Eight sequences each: three engines with KV caches planned for vLLM's default 256 do not fit in 24 GB.
    "engine": {"maxModelLen": 2048, "extraArgs": ["--max-num-seqs", "8"]},
    "replicas": 3,
    # kwok marks a new pod Ready at once, so a rollout's old pod goes before the new engine has loaded and the
    # router holds requests through that engine's cold start (a kubelet's readiness probe would keep the old pod
    # serving). On a busy machine that start took over two minutes: the router holds, and the clients wait, as long
    # as the test's bound on any change, not the default two minutes.
    "routing": {"maxWaitSeconds": 600},
}
WORKERS = 4
SETTLE = 600  # bounded, not timed: three engines load at once on two cores


def router_args(namespace: str) -> list[str]:
    """The router's arguments as the operator wrote them into its Deployment, but its address (a free local port,
    /metrics on it: the test reads the held requests there) and the admin kubeconfig for its ServiceAccount's
    token."""
    deployment = wait_for(lambda: get("deployment", "steady-router", namespace), "the router's Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    pairs = [(args[i], args[i + 1]) for i in range(0, len(args), 2)]
    return [a for flag, value in pairs if flag not in ("--port", "--host", "--metrics-port") for a in (flag, value)] + [
        "--kubeconfig", str(KUBECONFIG),
    ]  # fmt: skip


@pytest.fixture
def steady(namespace: str, tmp_path: Path) -> Iterator[tuple[str, StandInKubelet]]:
    """The model (routing: prefix-hash), its pods run here, and its router as a process; yields the router's URL."""
    operator = OperatorProcess(namespace, tmp_path)
    operator.start()
    try:
        pods = StandInKubelet(namespace, "app.kubernetes.io/name=vif-runtime", tmp_path / "pods")
        with routed_pod_ips(), pods as kubelet:
            apply_model(namespace, model_manifest("steady", SPEC))
            with running_router(tmp_path, *router_args(namespace), wait_on="/health") as router:
                yield router, kubelet
            assert kubelet.error is None, repr(kubelet.error)
    finally:
        operator.kill()


def plane_report(namespace: str, router_log: Path) -> str:
    """What the plane and the router saw, for a failure's message: pods' readiness, endpoint slices, the node, events
    and the router's membership changes."""

    def items(kind: str, *where: str) -> list[dict]:
        return json.loads(kubectl("get", kind, *where, "-o", "json").stdout)["items"]

    def ready(obj: dict) -> str:
        return next((c["status"] for c in obj["status"].get("conditions", []) if c["type"] == "Ready"), "?")

    pods = [
        (p["metadata"]["name"], p["status"].get("podIP"), ready(p), p["metadata"].get("deletionTimestamp"))
        for p in items("pods", "-n", namespace)
    ]
    slices = [(s["metadata"]["name"], s.get("endpoints")) for s in items("endpointslices", "-n", namespace)]
    nodes = [(n["metadata"]["name"], ready(n), n["spec"].get("taints")) for n in items("nodes")]
    events = [
        f"{e['involvedObject']['name']}: {e['reason']} {e.get('message', '')[:100]}" for e in items("events", "-A")
    ]
    membership = [line for line in router_log.read_text().splitlines() if "endpoint" in line]
    return "\n".join(
        [
            f"pods: {pods}",
            f"slices: {slices}",
            f"nodes: {nodes}",
            "events:",
            *events[-30:],
            "router:",
            *membership[-30:],
        ]
    )


async def under_load(
    router: str, change: Callable[[], object], settled: Callable[[], bool], report: Callable[[], str]
) -> list[Outcome]:
    """Steady load: answers first, then `change`, then until `settled()` and answers after it. The outcomes."""
    run = SteadyLoad(router, WORKERS, timeout=SETTLE)
    try:
        await run.wait(lambda: run.finished_after(0, ok_only=True) >= WORKERS, "answers before the change")
        await asyncio.to_thread(change)
        await asyncio.to_thread(wait_for, settled, "the change to settle", SETTLE)
        settled_at = time.monotonic()
        # at most one request per worker in flight at any moment: 2 x WORKERS answers after settling include
        # WORKERS sent after it
        await run.wait(lambda: run.finished_after(settled_at) >= 2 * WORKERS, "answers after the change settled")
    finally:
        outcomes = await run.stop()
    failed = [o for o in outcomes if not o.ok]
    assert failed == [], f"{failed}\n{report()}"  # every request answered, every stream finished
    return outcomes


def held(router: str) -> float:
    return metric(httpx.get(f"{router}/metrics", timeout=5).text, "vif_router_pending_requests")


def exited_cleanly(containers: list[Container]) -> bool:
    codes = [c.proc.poll() for c in containers]
    if None in codes:
        return False
    assert codes == [0] * len(codes), [(c.name, c.runner.log.read_text()[-2000:]) for c in containers]
    return True


async def test_scale_down_rollout_and_zero_drop_nothing(
    steady: tuple[str, StandInKubelet], namespace: str, tmp_path: Path
) -> None:
    router, kubelet = steady

    def report() -> str:
        return plane_report(namespace, tmp_path / "router.log")

    def ready(count: int) -> bool:
        running = kubelet.running()
        return len(running) == count and all(c.answers_ready() for c in running)

    await asyncio.to_thread(wait_for, lambda: ready(3), "three replicas serving", SETTLE)

    def scale(replicas: int) -> Callable[[], object]:
        return lambda: kubectl("scale", "im/steady", "-n", namespace, f"--replicas={replicas}")

    first = kubelet.running()
    await under_load(router, scale(1), lambda: ready(1) and exited_cleanly([c for c in first if c.stopping]), report)
    assert len([c for c in first if c.stopping]) == 2

    before = kubelet.running()
    old = {c.name for c in before}
    rolled = ("patch", "im/steady", "-n", namespace, "--type=merge", "-p", '{"spec":{"engine":{"maxModelLen":1024}}}')
    await under_load(
        router,
        lambda: kubectl(*rolled),
        lambda: ready(1) and kubelet.running()[0].name not in old and exited_cleanly(before),
        report,
    )

    before = kubelet.running()

    def zero_and_back() -> None:
        scale(0)()
        wait_for(lambda: exited_cleanly(before) and not kubelet.running(), "the model at zero", SETTLE)
        wait_for(lambda: held(router) >= WORKERS, "every worker's request held by the router at zero", SETTLE)
        scale(1)()

    await under_load(router, zero_and_back, lambda: ready(1), report)
