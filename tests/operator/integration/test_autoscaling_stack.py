"""The real autoscaling chain on the local control plane: Prometheus scrapes a gauge, KEDA's operator reads it
through a ScaledObject's prometheus trigger and makes an HPA, and the controller manager's HPA controller scales the
Deployment by KEDA's metric, read through the API server's aggregation layer (external.metrics.k8s.io). The pods are
kwok's: nothing runs in them, and the gauge is served by the test.

e2e/cluster/autoscaling.sh starts the stack for this module and removes it, with KEDA's CRDs, at the end: the other
tests expect a cluster without KEDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from helpers.cluster import KUBECONFIG, REPO, get, kubectl, wait_for

SCRIPT = REPO / "e2e" / "cluster" / "autoscaling.sh"
METRIC = "vif_test_queue_depth"
THRESHOLD = 5
# Prometheus scrapes every 2 s, KEDA polls every 2 s and the HPA controller syncs every 5 s: scaling takes seconds;
# the bound is generous for a busy machine.
SCALING = 180


@dataclass
class Stack:
    """The running stack: where Prometheus answers, and the folder whose file_sd files it scrapes."""

    prometheus: str
    targets: Path


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    # The stack lives beside the plane the tests use (VIF_KUBECONFIG may name another cluster directory).
    env = {**os.environ, "VIF_CLUSTER_DIR": str(KUBECONFIG.parent)}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False)


@pytest.fixture(scope="module")
def stack(cluster: Path) -> Iterator[Stack]:
    """Prometheus and KEDA (operator, metrics API server) for this module; built first if not cached (minutes)."""
    up = run_script("up")
    if up.returncode != 0:
        pytest.fail(f"autoscaling.sh up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
    state = KUBECONFIG.parent / "autoscaling"
    yield Stack((state / "prometheus-address").read_text().strip(), state / "prometheus-targets")
    down = run_script("down")
    assert down.returncode == 0, f"autoscaling.sh down failed:\n{down.stdout[-3000:]}\n{down.stderr[-3000:]}"


class Gauge:
    """A /metrics endpoint on 127.0.0.1 with one gauge whose value the test sets, listed as a Prometheus target
    with the labels a Kubernetes scrape of the Service's pod would give."""

    def __init__(self, stack: Stack, namespace: str, service: str) -> None:
        self.value = 0.0
        gauge = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"# TYPE {METRIC} gauge\n{METRIC} {gauge.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        labels = {"namespace": namespace, "service": service, "pod": f"{service}-0"}
        target = [{"targets": [f"127.0.0.1:{self.server.server_address[1]}"], "labels": labels}]
        self.target_file = stack.targets / f"{namespace}-{service}.json"
        staged = self.target_file.with_suffix(".tmp")  # file_sd reads *.json: write aside, then rename
        staged.write_text(json.dumps(target))
        staged.rename(self.target_file)

    def close(self) -> None:
        self.target_file.unlink(missing_ok=True)
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gauge(stack: Stack, namespace: str) -> Iterator[Gauge]:
    served = Gauge(stack, namespace, "web")
    yield served
    served.close()


def query_value(stack: Stack, query: str) -> float | None:
    """The value of an instant query that returns at most one series, or None when it returns none."""
    response = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": query}, timeout=5)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def apply(namespace: str, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    container = {"name": name, "image": "registry.invalid/web:1"}  # kwok pulls nothing
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def scaled_object(name: str, prometheus: str, query: str, min_replicas: int) -> dict[str, Any]:
    # A short scale-down window instead of the HPA's 5 minutes; scale-up keeps the HPA's default behaviour.
    scale_down = {"stabilizationWindowSeconds": 5, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}]}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": name},
            "minReplicaCount": min_replicas,
            "maxReplicaCount": 3,
            "pollingInterval": 2,
            "cooldownPeriod": 5,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": scale_down}}},
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {"serverAddress": prometheus, "query": query, "threshold": str(THRESHOLD)},
                }
            ],
        },
    }


def replicas(name: str, namespace: str) -> int:
    return get("deployment", name, namespace)["spec"]["replicas"]


def ready(scaled: dict[str, Any] | None) -> bool:
    conditions = ((scaled or {}).get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def external_metric(namespace: str, hpa: dict[str, Any]) -> float | None:
    """The value of the HPA's external metric as KEDA's metrics API server gives it to the HPA controller."""
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    selector = ",".join(f"{k}={v}" for k, v in metric["selector"]["matchLabels"].items())
    path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric['name']}?labelSelector={selector}"
    result = kubectl("get", "--raw", path, check=False)
    if result.returncode != 0:
        return None
    items = json.loads(result.stdout)["items"]
    value = items[0]["value"] if items else None
    if value is None:
        return None
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_keda_scales_a_deployment_by_a_prometheus_metric(stack: Stack, namespace: str, gauge: Gauge) -> None:
    query = f'sum({METRIC}{{namespace="{namespace}",service="web"}})'
    wait_for(lambda: query_value(stack, query) == 0, "Prometheus scraping the gauge")
    apply(namespace, deployment("web"))
    apply(namespace, scaled_object("web", stack.prometheus, query, min_replicas=1))
    wait_for(lambda: ready(get("scaledobject", "web", namespace)), "the ScaledObject Ready", timeout=60)
    hpa = wait_for(lambda: get("hpa", "keda-hpa-web", namespace), "KEDA's HPA")
    assert hpa["spec"]["metrics"][0]["type"] == "External"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)

    gauge.value = 4 * THRESHOLD  # wants 4 replicas: capped at 3
    wait_for(lambda: external_metric(namespace, hpa) == 4 * THRESHOLD, "KEDA's metric through the API server")
    wait_for(lambda: replicas("web", namespace) == 3, "scaled up to maxReplicaCount", timeout=SCALING)

    gauge.value = 0
    wait_for(lambda: replicas("web", namespace) == 1, "scaled back down to minReplicaCount", timeout=SCALING)


def test_keda_scales_to_zero_and_back(stack: Stack, namespace: str, gauge: Gauge) -> None:
    query = f'sum({METRIC}{{namespace="{namespace}",service="web"}})'
    wait_for(lambda: query_value(stack, query) == 0, "Prometheus scraping the gauge")
    apply(namespace, deployment("web"))
    apply(namespace, scaled_object("web", stack.prometheus, query, min_replicas=0))
    wait_for(lambda: replicas("web", namespace) == 0, "scaled to zero while the gauge is 0", timeout=SCALING)

    gauge.value = THRESHOLD
    wait_for(lambda: replicas("web", namespace) >= 1, "scaled from zero once the gauge is above 0", timeout=SCALING)
