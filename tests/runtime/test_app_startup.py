"""The engine loads in the background: alive before ready, 503 while loading, and a failed load is reported."""

from __future__ import annotations

import threading

import httpx
from prometheus_client import CollectorRegistry

from helpers.fake_engine import FakeEngine
from helpers.waits import eventually, ready
from vif.runtime.app.factory import create_app
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.serving.registry import serving_classes


def make_app(load, on_failure=None):
    metrics = RuntimeMetrics("m", CollectorRegistry())
    lifecycle = Lifecycle(on_fatal=on_failure)
    return create_app(ServedModel("m"), load, serving_classes("OpenAIServingChat"), metrics, lifecycle=lifecycle)


async def test_alive_and_refusing_while_loading() -> None:
    release = threading.Event()

    def slow_load() -> FakeEngine:
        release.wait(5)
        return FakeEngine()

    app = make_app(slow_load)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vif")
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/ready")).status_code == 503
        r = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready"
        assert r.headers["retry-after"] == "5"
        release.set()
        await eventually(lambda: ready(client), "/ready 200 once the load finished")
        await client.aclose()


async def test_failed_load_calls_the_failure_hook() -> None:
    failures: list[str] = []

    def broken_load() -> FakeEngine:
        raise RuntimeError("no such model")

    app = make_app(broken_load, lambda: failures.append("failed"))
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vif")
        await eventually(lambda: failures, "the failure hook called")
        assert failures == ["failed"]
        assert (await client.get("/health")).status_code == 503
        r = await client.post("/generate", json={"prompt": "x"})
        assert r.json()["error"]["message"] == "The engine failed to start."
        await client.aclose()


async def test_stopping_while_loading_does_not_wait_and_frees_the_engine() -> None:
    release, loading, engine = threading.Event(), threading.Event(), FakeEngine()

    def slow_load() -> FakeEngine:
        loading.set()
        release.wait(10)
        return engine

    app = make_app(slow_load)
    async with app.router.lifespan_context(app):
        await eventually(loading.is_set, "the load started")  # the server stops before it ends
    # leaving did not block on the load (it waits on `release` for up to 10 s)
    assert not engine.shut_down
    release.set()
    # the engine that finished loading after the stop is shut down
    await eventually(lambda: engine.shut_down, "the late engine shut down")
