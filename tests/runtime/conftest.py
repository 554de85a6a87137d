"""Fixtures for fast tests: the real app around a fake engine, driven in process through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from helpers.fake_engine import FakeEngine
from helpers.waits import eventually, ready
from vif.runtime.app.factory import ServerSettings, create_app
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.app.live import LiveSources
from vif.runtime.serving.base import BaseServingEngine
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.serving.registry import serving_classes
from vif.runtime.shared.tracing import Tracing

MODEL = "smollm2-135m-instruct"


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def metrics() -> RuntimeMetrics:
    return RuntimeMetrics(MODEL, CollectorRegistry())


@pytest.fixture
async def make_app(
    engine: FakeEngine, metrics: RuntimeMetrics
) -> AsyncIterator[Callable[..., Awaitable[tuple[Starlette, httpx.AsyncClient]]]]:
    """An async factory: `app, client = await make_app(settings=..., classes=..., lifecycle=..., model=...)`, the
    app started and ready, and a client driving it in process (httpx's ASGI transport takes each answer whole: a
    test of a slow reader calls the app itself)."""
    stack: list[tuple[object, httpx.AsyncClient]] = []

    async def factory(
        settings: ServerSettings | None = None,
        classes: dict[str, type[BaseServingEngine]] | None = None,
        lifecycle: Lifecycle | None = None,
        model: ServedModel | None = None,
        live: LiveSources | None = None,
        tracing: Tracing | None = None,
    ) -> tuple[Starlette, httpx.AsyncClient]:
        classes = classes or serving_classes("OpenAIServingChat")
        served = model or ServedModel(MODEL)
        app = create_app(served, lambda: engine, classes, metrics, settings, lifecycle, live, tracing)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vif")
        # the engine loads in a background task
        await eventually(lambda: ready(client), "the app's engine loaded (/ready 200)")
        stack.append((lifespan, client))
        return app, client

    yield factory
    for lifespan, client in stack:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture
def make_client(make_app: Callable[..., Awaitable[tuple[Starlette, httpx.AsyncClient]]]) -> Callable[..., object]:
    """An async factory: `client = await make_client(settings=..., classes=..., lifecycle=..., model=...)`, app
    started and ready."""

    async def factory(*args: object, **kwargs: object) -> httpx.AsyncClient:
        return (await make_app(*args, **kwargs))[1]

    return factory
