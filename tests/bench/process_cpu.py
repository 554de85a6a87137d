"""CPU time a server spends, split between its API process and the processes it started (engine core, worker).

The API process's CPU per request says whether a throughput gap between two servers on the same engine is the
front end's work. The started processes' figure is not a measure of work: vLLM's CPU engine polls and keeps its
cores busy whatever the load, so per request it is about the inverse of throughput.

The worker's run-queue wait is: the time its threads were ready to compute but another task held their core
(`/proc/<pid>/task/*/schedstat`). The worker computes every engine step, so this is how much of a load's time the
machine's other processes (API, engine core, the benchmark's client) took from the model itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class CpuSeconds:
    api: float
    children: float
    worker_wait: float

    def __sub__(self, other: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.api - other.api, self.children - other.children, self.worker_wait - other.worker_wait)


def _busy(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _run_queue_wait(pid: int) -> float:
    """Seconds the process's threads have spent runnable but not running."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])  # ns: on CPU, waiting, timeslices
        except (OSError, IndexError, ValueError):  # the thread exited, or no schedstats in this kernel
            continue
    return total / 1e9


def cpu_seconds(pid: int) -> CpuSeconds:
    """User + system seconds so far of the process `pid` and, together, of its live descendants; and the
    run-queue wait of the engine's worker processes (named `VLLM::Worker...` by vLLM)."""
    root = psutil.Process(pid)
    children = worker_wait = 0.0
    for child in root.children(recursive=True):
        try:
            children += _busy(child)
            if child.name().startswith("VLLM::Worker"):
                worker_wait += _run_queue_wait(child.pid)
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return CpuSeconds(_busy(root), children, worker_wait)
