"""The real autoscaling chain on the local control plane: Prometheus scrapes a gauge, KEDA's operator reads it
through a ScaledObject's prometheus trigger and makes an HPA, and the controller manager's HPA controller scales the
Deployment by KEDA's metric, read through the API server's aggregation layer (external.metrics.k8s.io). The pods are
kwok's: nothing runs in them, and the gauge is served by the test.

e2e/cluster/autoscaling.sh starts the stack for this module and removes it, with KEDA's CRDs, at the end: the other
tests expect a cluster without KEDA.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from helpers.autoscaling_stack import Stack
from helpers.cluster import get, kubectl, wait_for

METRIC = "vif_test_queue_depth"
THRESHOLD = 5
# Prometheus scrapes every 2 s, KEDA polls every 2 s and the HPA controller syncs every 5 s: scaling takes seconds;
# the bound is generous for a busy machine.
SCALING = 180


class Gauge:
    """A /metrics endpoint on 127.0.0.1 with one gauge whose value the test sets."""

    def __init__(self) -> None:
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
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gauge(stack: Stack, namespace: str) -> Iterator[Gauge]:
    """The gauge, scraped as the pod `web-0` of the Service `web`."""
    served = Gauge()
    with stack.target(served.address, namespace, "web", "web-0"):
        yield served
    served.close()


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
    wait_for(lambda: stack.query(query) == 0, "Prometheus scraping the gauge")
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
    wait_for(lambda: stack.query(query) == 0, "Prometheus scraping the gauge")
    apply(namespace, deployment("web"))
    apply(namespace, scaled_object("web", stack.prometheus, query, min_replicas=0))
    wait_for(lambda: replicas("web", namespace) == 0, "scaled to zero while the gauge is 0", timeout=SCALING)

    gauge.value = THRESHOLD
    wait_for(lambda: replicas("web", namespace) >= 1, "scaled from zero once the gauge is above 0", timeout=SCALING)
