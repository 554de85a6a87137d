"""KEDA and Prometheus beside the local control plane (e2e/cluster/autoscaling.sh), from tests: start and stop the
stack, list a local process as a Prometheus target with the labels a Kubernetes scrape would give, query."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from helpers.cluster import KUBECONFIG, REPO

SCRIPT = REPO / "e2e" / "cluster" / "autoscaling.sh"


@dataclass
class Stack:
    """The running stack: where Prometheus answers, and the folder whose file_sd files it scrapes."""

    prometheus: str
    targets: Path

    def query(self, query: str) -> float | None:
        """The value of an instant query that returns at most one series, or None when it returns none."""
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": query}, timeout=5)
        response.raise_for_status()
        result = response.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    @contextmanager
    def target(self, address: str, namespace: str, service: str, pod: str) -> Iterator[None]:
        """Scrape `address` (host:port, /metrics) as the pod `pod` of Service `service` while inside."""
        path = self.targets / f"{namespace}-{pod}.json"
        staged = path.with_suffix(".tmp")  # file_sd reads *.json: write aside, then rename
        labels = {"namespace": namespace, "service": service, "pod": pod}
        staged.write_text(json.dumps([{"targets": [address], "labels": labels}]))
        staged.rename(path)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    # The stack lives beside the plane the tests use (VIF_KUBECONFIG may name another cluster directory).
    env = {**os.environ, "VIF_CLUSTER_DIR": str(KUBECONFIG.parent)}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False)


@contextmanager
def running_stack() -> Iterator[Stack]:
    """Prometheus and KEDA (operator, metrics API server) while inside; KEDA's CRDs go with them, since other tests
    expect a cluster without KEDA."""
    up = run_script("up")
    if up.returncode != 0:
        pytest.fail(f"autoscaling.sh up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
    state = KUBECONFIG.parent / "autoscaling"
    yield Stack((state / "prometheus-address").read_text().strip(), state / "prometheus-targets")
    down = run_script("down")
    assert down.returncode == 0, f"autoscaling.sh down failed:\n{down.stdout[-3000:]}\n{down.stderr[-3000:]}"
