"""CPU time a server spends, split between its API process and the processes it started (engine core, worker).

The API process's CPU per request says whether a throughput gap between two servers on the same engine is the
front end's work. The started processes' figure is not a measure of work: vLLM's CPU engine polls and keeps its
cores busy whatever the load, so per request it is about the inverse of throughput.

The worker's busy share is the time its main thread, which runs the model, was on a core: near 100 %, the
model's compute is the limit and no front end can raise throughput. Its run-queue wait is the time that thread
was ready to compute but another task held its core (`/proc/<pid>/schedstat`): how much of a load's time the
machine's other processes (API, engine core, the benchmark's client) took from the model itself. Its other
threads (gloo, ZMQ) are not counted: they are bound to the same core and mostly wait behind the main thread."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class CpuSeconds:
    api: float
    children: float
    worker_busy: float
    worker_wait: float

    def __sub__(self, other: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(
            self.api - other.api,
            self.children - other.children,
            self.worker_busy - other.worker_busy,
            self.worker_wait - other.worker_wait,
        )


def _busy(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _main_thread_schedstat(pid: int) -> tuple[float, float]:
    """Seconds the process's main thread has spent running, and runnable but not running."""
    try:
        running, waiting = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]  # ns; then timeslices
        return int(running) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):  # the process exited, or no schedstats in this kernel
        return 0.0, 0.0


def cpu_seconds(pid: int) -> CpuSeconds:
    """User + system seconds so far of the process `pid` and, together, of its live descendants; and the main
    threads' running and waiting seconds of the engine's workers (named `VLLM::Worker...` by vLLM)."""
    root = psutil.Process(pid)
    children = worker_busy = worker_wait = 0.0
    for child in root.children(recursive=True):
        try:
            children += _busy(child)
            if child.name().startswith("VLLM::Worker"):
                busy, wait = _main_thread_schedstat(child.pid)
                worker_busy, worker_wait = worker_busy + busy, worker_wait + wait
        except psutil.NoSuchProcess:
            continue
    return CpuSeconds(_busy(root), children, worker_busy, worker_wait)
