"""A model of two replicas behind two router pods on the local plane, its pods run by the stand-in kubelet (which
starts a container that exits again, as `restartPolicy: Always` does): what the pod fault suite (chaos_pods.py) and
the soak (soak_pods.py) run their load through, and how they look at its pods."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import httpx
import psutil

from helpers.exposition import metric
from helpers.kubelet import Container, StandInKubelet
from helpers.runtime_process import MODEL
from helpers.waits import wait_for

T = TypeVar("T")
WORKERS = 4
FIRST_BYTE = 30  # routing.firstByteTimeoutSeconds: a whole answer of this load takes a few seconds
IDLE = 5  # routing.idleTimeoutSeconds: a started stream sends a token every few tens of milliseconds
SETTLE = 600  # bounded, not timed: engines load on a busy 2-core machine
SPEC = {
    "model": {"path": "/models/SmolLM2-135M-Instruct"},
    "servedName": MODEL,
    "replicas": 2,
    "engine": {"maxModelLen": 2048, "extraArgs": ["--max-num-seqs", "8"]},
    # The stand-in kubelet gives every pod all of this machine's 2 cores, as a node without the static CPU manager
    # does; vLLM's own binding would then pin both engines' threads to the same first core, and a replica restarted
    # beside a busy one got 2% of it (its engine had not loaded after 4 minutes). Unbound, one thread each, so the
    # two engines leave room for the routers (docs/troubleshooting.md).
    "env": [{"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"}, {"name": "OMP_NUM_THREADS", "value": "1"}],
    "routing": {
        "strategy": "round-robin",
        "replicas": 2,
        "firstByteTimeoutSeconds": FIRST_BYTE,
        "idleTimeoutSeconds": IDLE,
    },
}
MANIFEST = {"apiVersion": "inference.vif.dev/v1alpha1", "kind": "InferenceModel", "metadata": {"name": "chat"},
            "spec": SPEC}  # fmt: skip


def of(kubelet: StandInKubelet, command: str) -> list[Container]:
    """The running containers of one kind: `vif-router` or `vif-runtime`."""
    return sorted((c for c in kubelet.running() if c.runner.container["command"][0] == command), key=lambda c: c.ip)


def metrics(container: Container) -> str:
    try:
        return httpx.get(f"http://{container.ip}:{container.runner.metrics_port}/metrics", timeout=5).text
    except httpx.TransportError:
        return ""


def routes_to(router: Container, replica: Container) -> bool:
    return metric(metrics(router), "vif_router_endpoint_ready", endpoint=replica.url) == 1


def serving(kubelet: StandInKubelet) -> tuple[list[Container], list[Container]] | None:
    """Both routers and both replicas up, each router routing to both replicas."""
    routers, replicas = of(kubelet, "vif-router"), of(kubelet, "vif-runtime")
    if len(routers) != 2 or len(replicas) != 2 or not all(r.answers_ready() for r in replicas):
        return None
    return (routers, replicas) if all(routes_to(r, p) for r in routers for p in replicas) else None


def engine_requests(replica: Container) -> float:
    """Requests the replica's engine is running or has waiting."""
    text = metrics(replica)
    return metric(text, "vllm:num_requests_running") + metric(text, "vllm:num_requests_waiting")


def group(pgid: int) -> list[psutil.Process]:
    """The processes of a process group (a container's: the runtime and its engine), zombies included."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != 0 and os.getpgid(process.pid) == pgid:
                found.append(process)
        except ProcessLookupError:
            continue
    return found


def group_gone(pgid: int) -> bool:
    return not group(pgid)


class RouterService:
    """The model's Service in front of its router pods, as a kubelet's readiness probe and kube-proxy make it: a
    router pod is in it while its process runs and answers /health, looked at every 0.2 s (a real node takes a
    second or two to drop a dead pod's address, so refuses a few more connections meanwhile). Call it for the
    ready pods' URLs; use it in a `with`."""

    def __init__(self, kubelet: StandInKubelet) -> None:
        self.kubelet = kubelet
        self.ready: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __call__(self) -> list[str]:
        return self.ready

    def __enter__(self) -> RouterService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.ready = [c.url for c in of(self.kubelet, "vif-router") if healthy(c.url)]


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def group_rss(pgid: int) -> int:
    """The resident memory of a process group, bytes (a process that ended meanwhile counts nothing)."""
    total = 0
    for process in group(pgid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


async def waiting(check: Callable[[], T | None], what: str, timeout: float = SETTLE) -> T:
    """`wait_for` off the event loop, so the load's clients go on meanwhile; the truthy value it waited for."""
    value: T = await asyncio.to_thread(wait_for, check, what, timeout)
    return value
