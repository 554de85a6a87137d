"""The engine loads in the background: alive before ready, 503 while loading, and a failed load is reported."""

from __future__ import annotations

import asyncio
import threading

import httpx
from prometheus_client import CollectorRegistry

from helpers.fake_engine import FakeEngine
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
        for _ in range(200):
            if (await client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert (await client.get("/ready")).status_code == 200
        await client.aclose()


async def test_failed_load_calls_the_failure_hook() -> None:
    failures: list[str] = []

    def broken_load() -> FakeEngine:
        raise RuntimeError("no such model")

    app = make_app(broken_load, lambda: failures.append("failed"))
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vif")
        for _ in range(200):
            if failures:
                break
            await asyncio.sleep(0.01)
        assert failures == ["failed"]
        assert (await client.get("/health")).status_code == 503
        r = await client.post("/generate", json={"prompt": "x"})
        assert r.json()["error"]["message"] == "The engine failed to start."
        await client.aclose()


async def test_stopping_while_loading_does_not_wait_and_frees_the_engine() -> None:
    release, engine = threading.Event(), FakeEngine()

    def slow_load() -> FakeEngine:
        release.wait(10)
        return engine

    app = make_app(slow_load)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.05)  # the load has started; the server stops before it ends
    # leaving did not block on the load (it waits on `release` for up to 10 s)
    assert not engine.shut_down
    release.set()
    for _ in range(200):
        if engine.shut_down:
            break
        await asyncio.sleep(0.01)
    assert engine.shut_down  # the engine that finished loading after the stop was shut down
