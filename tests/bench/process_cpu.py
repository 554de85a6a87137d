"""CPU time a server spends, split between its API process and the processes it started (engine core, worker).

The API process's CPU per request says whether a throughput gap between two servers on the same engine is the
front end's work. The started processes' figure is not a measure of work: vLLM's CPU engine polls and keeps its
cores busy whatever the load, so per request it is about the inverse of throughput."""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class CpuSeconds:
    api: float
    children: float

    def __sub__(self, other: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.api - other.api, self.children - other.children)


def _busy(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def cpu_seconds(pid: int) -> CpuSeconds:
    """User + system seconds so far of the process `pid` and, together, of its live descendants."""
    root = psutil.Process(pid)
    children = 0.0
    for child in root.children(recursive=True):
        try:
            children += _busy(child)
        except psutil.NoSuchProcess:
            continue
    return CpuSeconds(_busy(root), children)
