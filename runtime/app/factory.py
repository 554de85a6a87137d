"""Builds the Starlette app: routes, middleware, error handlers, and the engine loaded in the background.

The engine loads after the server starts listening, so `/health` answers (and a liveness probe passes) while
the model loads; `/ready` and the inference routes answer 503 until it is up. While serving, the engine's
health is checked every `health_interval`; when it dies the lifecycle calls `on_fatal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vif.runtime.app.body_check import BodyChecker
from vif.runtime.app.errors import error_bytes
from vif.runtime.app.inference import InferenceEndpoint
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.app.limiter import SequenceLimiter
from vif.runtime.app.middleware import APIKeyAuth, BodySizeLimit, RequestObserver
from vif.runtime.app.openapi import build_openapi
from vif.runtime.app.settings import ServerSettings
from vif.runtime.app.tokenizer import TOKENIZER_PATHS, TokenizerEndpoint
from vif.runtime.engine.types import EngineClient
from vif.runtime.protocols.errors import APIError
from vif.runtime.serving.base import BaseServingEngine
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.shared.asgi import json_response
from vif.runtime.shared.routes import PROTOCOL_PATHS

log = logging.getLogger(__name__)

__all__ = ["ServerSettings", "create_app"]


async def load_in_background(load_engine: Callable[[], EngineClient]) -> EngineClient:
    """Run the blocking engine start in a daemon thread. If the server stops first (this coroutine is cancelled),
    shutdown does not wait for the model to load, and the engine is shut down as soon as it exists."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[EngineClient] = loop.create_future()

    def work() -> None:
        engine: EngineClient | None = None
        error: BaseException | None = None
        try:
            engine = load_engine()
        except Exception as exc:
            error = exc

        def deliver() -> None:
            if done.cancelled():
                if engine is not None:
                    engine.shutdown()
            elif engine is not None:
                done.set_result(engine)
            else:
                done.set_exception(error or RuntimeError("the engine did not start"))

        try:
            loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the event loop is closed: the server is gone
            if engine is not None:
                engine.shutdown()

    threading.Thread(target=work, name="engine-loader", daemon=True).start()
    return await done


async def start_engine(load_engine: Callable[[], EngineClient]) -> EngineClient:
    """The engine loaded and its LoRA adapters with it; shut down again if an adapter fails."""
    engine = await load_in_background(load_engine)
    try:
        await engine.load_adapters()
    except BaseException:
        engine.shutdown()
        raise
    return engine


def create_app(
    model: ServedModel,
    load_engine: Callable[[], EngineClient],
    serving_classes: dict[str, type[BaseServingEngine]],
    metrics: RuntimeMetrics,
    settings: ServerSettings | None = None,
    lifecycle: Lifecycle | None = None,
) -> Starlette:
    settings = settings or ServerSettings()
    state = lifecycle or Lifecycle()
    limiter = SequenceLimiter(
        settings.limit_concurrency or 1, settings.max_sequences_per_request, settings.max_unsent_bytes
    )
    # One worker: two would contend with the event loop for the GIL, and a waiting loop can lose the handoff to
    # the other worker again and again (a 300 ms stall of /health under 16 bodies of 40,000 messages; ~30 ms with one).
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vif-prepare")
    checker = BodyChecker()

    async def run_engine() -> None:
        try:
            engine = await start_engine(load_engine)
        except Exception as exc:
            log.exception("the engine failed to start")
            state.failed(f"the engine failed to start: {type(exc).__name__}: {exc}")
            return
        limiter.resize(settings.concurrency_limit(engine.info.max_num_seqs))
        state.started(engine, {p: cls(engine, model, metrics) for p, cls in serving_classes.items()})
        # The engine's millions of long-lived objects (torch, the tokenizer) out of the collector's sight: a full
        # collection, which a burst of request allocations triggers, would otherwise walk them all while holding
        # the GIL (~200 ms of stalled event loop under 16 bodies of 40,000 messages).
        gc.collect()
        gc.freeze()
        log.info(
            "model %s is ready (max_model_len %d, at most %d sequences in flight)",
            model.name,
            engine.info.max_model_len,
            limiter.limit,
        )
        while state.alive:
            await asyncio.sleep(settings.health_interval)
            try:
                await engine.check_health()
            except Exception as exc:
                state.failed(str(exc) or type(exc).__name__)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        running = asyncio.create_task(run_engine())
        yield
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        pool.shutdown(wait=False, cancel_futures=True)
        checker.shutdown()
        if state.engine is not None:
            state.engine.shutdown()

    async def health(request: Request) -> Response:
        ok = state.alive
        if ok and state.engine is not None:
            try:
                await state.engine.check_health()
            except Exception as exc:
                state.failed(str(exc) or type(exc).__name__)
                ok = False
        return json_response({"status": "ok" if ok else "unhealthy"}, 200 if ok else 503)

    async def ready(request: Request) -> Response:
        ok = state.ready
        return json_response({"status": "ready" if ok else "not ready"}, 200 if ok else 503)

    async def models(request: Request) -> Response:
        max_len = state.engine.info.max_model_len if state.engine else None
        # As vLLM lists them: an adapter's parent (and every card's root) is the base model.
        cards = [
            {"id": name, "object": "model", "created": 0, "owned_by": "vif", "root": model.name,
             "parent": None if name == model.name else model.name, "max_model_len": max_len}
            for name in (model.name, *model.adapters)
        ]  # fmt: skip
        return json_response({"object": "list", "data": cards})

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    openapi = build_openapi(_version())

    async def openapi_route(request: Request) -> Response:
        return json_response(openapi)

    routes = [
        Route(
            path,
            InferenceEndpoint(
                protocol, state, limiter, metrics, pool, checker, settings.body_timeout, settings.send_timeout
            ),
            methods=["POST"],
        )
        for path, protocol in PROTOCOL_PATHS.items()
    ]
    routes += [
        Route(path, TokenizerEndpoint(path, state, model, pool, checker, settings.body_timeout), methods=["POST"])
        for path in TOKENIZER_PATHS
    ]
    routes += [
        Route("/v1/models", models),
        Route("/health", health),
        Route("/ready", ready),
        Route("/metrics", metrics_route),
        Route("/openapi.json", openapi_route),
    ]
    middleware = [
        Middleware(RequestObserver, metrics=metrics),
        Middleware(APIKeyAuth, api_keys=settings.api_keys),
        Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
    ]
    handlers = {APIError: _api_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)


def _error_response(error: APIError) -> Response:
    return Response(error_bytes(error), error.status, error.headers, media_type="application/json")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return _error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return _error_response(APIError(str(exc.detail), status=exc.status_code, type=kind))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return _error_response(APIError("Internal server error", status=500, type="internal_error"))


def _version() -> str:
    try:
        return version("vllm-inference-framework")
    except PackageNotFoundError:
        return "0+unknown"
