"""Builds the Starlette app: routes, middleware, error handlers, and the engine loaded in the background.

The engine loads after the server starts listening, so `/health` answers (and a liveness probe passes) while
the model loads; `/ready` and the inference routes answer 503 until it is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vif.runtime.app.metrics import RuntimeMetrics
from vif.runtime.app.middleware import (
    PROTOCOL_PATHS,
    APIKeyAuth,
    BodySizeLimit,
    ConcurrencyLimit,
    RequestObserver,
)
from vif.runtime.app.openapi import build_openapi
from vif.runtime.engine.types import EngineClient
from vif.runtime.protocols.errors import APIError
from vif.runtime.serving.base import BaseServingEngine, ServedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    """HTTP-side settings: API keys, the concurrency limit and the body size limit."""

    api_keys: tuple[str, ...] = ()
    limit_concurrency: int | None = None
    max_body_bytes: int = 4 << 20


class EngineState:
    """The engine as the routes see it: loading, serving (with one serving object per protocol), or failed."""

    def __init__(self) -> None:
        self.engine: EngineClient | None = None
        self.serving: dict[str, BaseServingEngine] = {}
        self.error: str | None = None


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


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(exc: APIError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)


def create_app(
    model: ServedModel,
    load_engine: Callable[[], EngineClient],
    serving_classes: dict[str, type[BaseServingEngine]],
    metrics: RuntimeMetrics,
    settings: ServerSettings = ServerSettings(),
    on_engine_failure: Callable[[], None] | None = None,
) -> Starlette:
    state = EngineState()

    async def load() -> None:
        try:
            engine = await load_in_background(load_engine)
        except Exception as exc:
            state.error = f"{type(exc).__name__}: {exc}"
            log.exception("the engine failed to start")
            if on_engine_failure is not None:
                on_engine_failure()
            return
        state.serving = {p: cls(engine, model, metrics) for p, cls in serving_classes.items()}
        state.engine = engine
        log.info("model %s is ready (max_model_len %d)", model.name, engine.info.max_model_len)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(load())
        yield
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        if state.engine is not None:
            state.engine.shutdown()

    async def infer(request: Request) -> Response:
        if state.engine is None:
            raise APIError(
                "The model is still loading." if state.error is None else "The engine failed to start.",
                status=503,
                type="service_unavailable",
                code="model_not_ready",
                headers={"Retry-After": "5"},
            )
        try:
            return await state.serving[PROTOCOL_PATHS[request.url.path]](request)
        except APIError:
            raise
        except Exception:
            log.exception("request failed")
            raise APIError("Internal server error", status=500, type="internal_error") from None

    async def healthy() -> bool:
        if state.error is not None:
            return False
        if state.engine is None:
            return True  # still loading: alive, not ready
        try:
            await state.engine.check_health()
        except Exception:
            log.exception("engine health check failed")
            return False
        return True

    async def health(request: Request) -> Response:
        ok = await healthy()
        return json_response({"status": "ok" if ok else "unhealthy"}, 200 if ok else 503)

    async def ready(request: Request) -> Response:
        ok = state.engine is not None and await healthy()
        return json_response({"status": "ready" if ok else "not ready"}, 200 if ok else 503)

    async def models(request: Request) -> Response:
        max_len = state.engine.info.max_model_len if state.engine else None
        card = {
            "id": model.name,
            "object": "model",
            "created": 0,
            "owned_by": "vif",
            "max_model_len": max_len,
        }
        return json_response({"object": "list", "data": [card]})

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    openapi = build_openapi(_version())

    async def openapi_route(request: Request) -> Response:
        return json_response(openapi)

    routes = [Route(path, infer, methods=["POST"]) for path in PROTOCOL_PATHS]
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
        Middleware(ConcurrencyLimit, limit=settings.limit_concurrency),
    ]
    handlers = {APIError: _api_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return error_response(APIError(str(exc.detail), status=exc.status_code, type=kind))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(APIError("Internal server error", status=500, type="internal_error"))


def _version() -> str:
    try:
        return version("vllm-inference-framework")
    except PackageNotFoundError:
        return "0+unknown"
