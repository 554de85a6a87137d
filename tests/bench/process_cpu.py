"""CPU time a server spends, split between its API process and the processes it started (the engine core).

On 2 shared cores every CPU-second the front end takes is taken from the engine's step (and an engine thread
preempted mid-step stalls the whole step), so CPU per request of each process is the figure that explains a
throughput gap between two servers running the same engine.
"""

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
