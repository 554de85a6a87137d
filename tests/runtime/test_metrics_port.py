"""`--metrics-port`: /metrics on a listener of its own (vif.runtime.shared.metrics_listener), and then not on the
API's port, for the runtime and the router alike (the operator fences the two ports apart: docs/security.md)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from helpers.processes import free_port
from vif.runtime.app.settings import ServerSettings
from vif.runtime.router.app import RouterSettings, create_app
from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.shared.metrics_listener import CONTENT_TYPE, MetricsListener


@pytest.fixture
def listener(metrics: RuntimeMetrics) -> Iterator[MetricsListener]:
    started = MetricsListener("127.0.0.1", free_port(), metrics.render).start()
    yield started
    started.stop()


def test_the_listener_serves_the_exposition_and_nothing_else(
    listener: MetricsListener, metrics: RuntimeMetrics
) -> None:
    metrics.requests.labels(metrics.model, "chat", "200").inc()
    base = f"http://127.0.0.1:{listener.port}"
    scraped = httpx.get(f"{base}/metrics", timeout=5)
    assert scraped.status_code == 200 and scraped.headers["content-type"] == CONTENT_TYPE
    assert 'vif_requests_total{model="smollm2-135m-instruct",protocol="chat",status="200"} 1.0' in scraped.text
    for path in ("/", "/v1/models", "/metrics/../health", "/health"):
        assert httpx.get(base + path, timeout=5).status_code == 404, path


async def test_with_a_metrics_port_the_runtime_api_has_no_metrics(make_client) -> None:
    here, elsewhere = await make_client(), await make_client(ServerSettings(metrics_port=free_port()))
    assert (await here.get("/metrics")).status_code == 200
    assert (await elsewhere.get("/metrics")).status_code == 404
    assert (await elsewhere.get("/health")).status_code == 200


async def test_with_a_metrics_port_the_router_api_has_no_metrics() -> None:
    for settings, status in ((RouterSettings(), 200), (RouterSettings(metrics_port=free_port()), 404)):
        app = create_app(EndpointSet([]), settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as client:
            assert (await client.get("/metrics")).status_code == status
