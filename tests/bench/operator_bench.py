"""Operator benchmark (`make bench-operator N=...`): N InferenceModels applied at once on the local plane.

Prints the seconds until all are Ready, the API requests per model the operator's handlers sent (from its own
metrics; kopf's watches and its own bookkeeping patches are not counted there), the operator's peak memory,
and the reconciles and API writes during an idle period after everything is Ready (there should be none).
The local plane's kwok node is sized for thousands of pods; the pods are simulated, the controllers real.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.cluster import kubectl, require_cluster  # noqa: E402
from helpers.model_fleet import api_requests, apply_fleet, operator_metrics, reconciles, wait_all_ready  # noqa: E402
from helpers.operator_process import OperatorProcess  # noqa: E402
from helpers.processes import free_port  # noqa: E402


def peak_memory_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run(count: int, idle_seconds: float, timeout: float) -> dict[str, float]:
    namespace = f"vif-bench-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    port = free_port()
    operator = OperatorProcess(namespace, Path(tempfile.mkdtemp()), ("--metrics-port", str(port)))
    operator.start()
    try:
        started = time.monotonic()
        apply_fleet(namespace, count)
        print(f"  applied {count} models in {time.monotonic() - started:.0f} s", flush=True)
        seconds = wait_all_ready(namespace, count, started, timeout, progress=True)
        busy = operator_metrics(port)
        assert operator.proc is not None
        busy_cpu = cpu_seconds(operator.proc.pid)
        time.sleep(idle_seconds)
        idle = operator_metrics(port)
        return {
            "models": count,
            "seconds to all Ready": seconds,
            "API requests per model": api_requests(busy) / count,
            "API writes per model": api_requests(busy, writes_only=True) / count,
            "operator CPU s": busy_cpu,
            "peak memory MiB": peak_memory_mib(operator.proc.pid),
            "idle reconciles": reconciles(idle) - reconciles(busy),
            "idle API writes": api_requests(idle, writes_only=True) - api_requests(busy, writes_only=True),
        }
    finally:
        operator.kill()
        # Waits: deleting a thousand models' objects (and kwok's pods) takes minutes of the plane's CPU, which
        # would otherwise be charged to the next run.
        kubectl("delete", "namespace", namespace, "--timeout=900s", check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", "-n", type=int, nargs="+", default=[100])
    parser.add_argument("--idle-seconds", type=float, default=300)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    require_cluster()
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    rows = [run(count, args.idle_seconds, args.timeout) for count in args.models]
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{row[h]:.1f}" if isinstance(row[h], float) else str(row[h]) for h in header) + " |")


if __name__ == "__main__":
    main()
