"""`vif-router --service NS/NAME` follows the Service's EndpointSlices on a real API server: scaling the
Deployment behind it changes the router's endpoint set; no ready replica means /ready 503."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from helpers.cluster import KUBECONFIG, fresh_namespace, kubectl, require_cluster, wait_for
from helpers.router_process import running_router

LABELS = {"app": "replicas"}


def workload(replicas: int) -> str:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "replicas"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "containers": [
                        {
                            "name": "runtime",
                            "image": "vif-runtime:test",
                            "ports": [{"containerPort": 8000, "name": "http"}],
                        }
                    ]
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "model"},
        "spec": {"selector": LABELS, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    return yaml.safe_dump_all([deployment, service])


@pytest.fixture
def namespace() -> Iterator[str]:
    require_cluster()
    with fresh_namespace("vif-router") as name:
        yield name


@pytest.fixture
def router(namespace: str, tmp_path: Path) -> Iterator[str]:
    service = ("--service", f"{namespace}/model", "--service-port", "http", "--kubeconfig", str(KUBECONFIG))
    with running_router(tmp_path, *service, "--max-wait", "1", wait_on="/health") as url:
        yield url


def ready_endpoints(url: str) -> set[str]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return set(re.findall(r'^vif_router_endpoint_ready\{endpoint="([^"]+)"[^}]*\} 1\.0$', text, re.M))


def endpoints_when(url: str, count: int) -> set[str] | None:
    found = ready_endpoints(url)
    return found if len(found) == count else None


def test_the_endpoint_set_follows_the_deployment(namespace: str, router: str) -> None:
    assert httpx.get(f"{router}/ready", timeout=5).status_code == 503  # no Service yet: nothing to route to
    kubectl("apply", "-n", namespace, "-f", "-", stdin=workload(2))
    two = wait_for(lambda: endpoints_when(router, 2), "2 endpoints", 60)
    assert all(re.fullmatch(r"http://[0-9.]+:8000", u) for u in two), two
    assert httpx.get(f"{router}/ready", timeout=5).status_code == 200
    kubectl("scale", "-n", namespace, "deployment/replicas", "--replicas=3")
    three = wait_for(lambda: endpoints_when(router, 3), "3 endpoints", 60)
    assert two < three
    kubectl("scale", "-n", namespace, "deployment/replicas", "--replicas=0")
    wait_for(lambda: not ready_endpoints(router), "no endpoint", 60)
    assert httpx.get(f"{router}/ready", timeout=5).status_code == 503
    r = httpx.post(f"{router}/v1/completions", json={"prompt": "x"}, timeout=10)  # held, then refused
    assert r.status_code == 503 and r.headers["retry-after"]


def forged_slice(address: str) -> str:
    """An EndpointSlice someone made by hand for the Service: its name label, a ready address of their own."""
    return yaml.safe_dump({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "model-forged", "labels": {"kubernetes.io/service-name": "model"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    })  # fmt: skip


def test_only_the_endpointslice_controllers_slices_count(namespace: str, router: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=workload(1))
    wait_for(lambda: endpoints_when(router, 1), "1 endpoint", 60)
    kubectl("apply", "-n", namespace, "-f", "-", stdin=forged_slice("10.99.99.99"))
    # A change after the forged slice: the watch delivers events in order, so by the time the router has the
    # second replica it has seen (and skipped) the forged slice.
    kubectl("scale", "-n", namespace, "deployment/replicas", "--replicas=2")
    two = wait_for(lambda: endpoints_when(router, 2), "2 endpoints", 60)
    members = re.findall(r'^vif_router_endpoint_ready\{endpoint="([^"]+)"', httpx.get(f"{router}/metrics").text, re.M)
    assert "http://10.99.99.99:8000" not in members and set(members) == two
