"""The runtime's composition root: the app's routes, middleware and error handlers wired to one lifecycle, one
limiter and the engine that `engine_runner` loads in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vif.runtime.app.body_check import BodyChecker
from vif.runtime.app.engine_runner import run_engine
from vif.runtime.app.errors import error_bytes, note_error
from vif.runtime.app.inference import InferenceEndpoint
from vif.runtime.app.info_routes import info_routes
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.app.limiter import SequenceLimiter
from vif.runtime.app.live import SAMPLE_CHAT, InForce, LiveSettings, LiveSources
from vif.runtime.app.middleware import APIKeyAuth, BodySizeLimit, RequestObserver
from vif.runtime.app.response_cache import ResponseCache
from vif.runtime.app.settings import ServerSettings
from vif.runtime.app.tokenizer import TOKENIZER_PATHS, TokenizerEndpoint
from vif.runtime.engine.types import EngineClient
from vif.runtime.protocols.errors import APIError
from vif.runtime.serving.base import BaseServingEngine
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.shared.api_keys import KeyCheck
from vif.runtime.shared.live_files import LiveFiles, fingerprint
from vif.runtime.shared.routes import PROTOCOL_PATHS
from vif.runtime.shared.tracing import Tracing

log = logging.getLogger(__name__)

__all__ = ["ServerSettings", "create_app"]


def create_app(
    model: ServedModel,
    load_engine: Callable[[], EngineClient],
    serving_classes: dict[str, type[BaseServingEngine]],
    metrics: RuntimeMetrics,
    settings: ServerSettings | None = None,
    lifecycle: Lifecycle | None = None,
    live: LiveSources | None = None,
    tracing: Tracing | None = None,
) -> Starlette:
    """`live`: where the live settings come from (`app/live.py`), read now and again when their files change; what
    they say takes the place of `model`'s template and role and of `settings`' keys and response cache."""
    settings = settings or ServerSettings()
    state = lifecycle or Lifecycle()
    tracing = tracing or Tracing()
    limiter = SequenceLimiter(
        settings.limit_concurrency or 1, settings.max_sequences_per_request, settings.max_unsent_bytes
    )
    # One worker: two would contend with the event loop for the GIL, and a waiting loop can lose the handoff to
    # the other worker again and again (a 300 ms stall of /health under 16 bodies of 40,000 messages; ~30 ms with one).
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vif-prepare")
    checker = BodyChecker()
    cache = ResponseCache(settings.response_cache)
    metrics.watch_cache(lambda: len(cache), lambda: cache.bytes)
    in_force = InForce(KeyCheck(settings.api_keys), model)

    def apply_live(new: LiveSettings) -> None:
        old = in_force.model
        in_force.keys = new.keys
        in_force.model = replace(in_force.model, chat_template=new.chat_template, response_role=new.response_role)
        for serving in state.serving.values():
            serving.model = in_force.model
        cache.reconfigure(new.response_cache)
        if (new.chat_template, new.response_role) != (old.chat_template, old.response_role):
            cache.clear()  # a stored answer carries the old role (the template is in the key already)
        logging.getLogger("vif").setLevel(new.log_level.upper())

    def check_template(text: str) -> None:
        """The engine's own rendering of a sample conversation, once it has loaded (a syntax check before)."""
        if state.engine is not None:
            state.engine.render_chat(SAMPLE_CHAT, text)

    watcher = None
    if live is not None:
        version = fingerprint(live.paths)  # before the read: a change in between is then read again, not lost
        apply_live(live.read())  # a ConfigError here stops the start
        if live.paths:
            # listed again at each look: a tenant added to the tenants file brings a key file of its own
            watcher = LiveFiles(lambda: live.paths, lambda: live.read(check_template), apply_live, version)
        metrics.watch_live_config(lambda: watcher is not None and watcher.refused is not None)

    def serve(engine: EngineClient) -> None:
        limiter.resize(settings.concurrency_limit(engine.info.max_num_seqs))
        state.started(engine, {p: cls(engine, in_force.model, metrics) for p, cls in serving_classes.items()})
        log.info(
            "model %s is ready (max_model_len %d, at most %d sequences in flight)",
            model.name,
            engine.info.max_model_len,
            limiter.limit,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(run_engine(load_engine, state, serve, settings.health_interval))]
        if watcher is not None:
            tasks.append(asyncio.create_task(watcher.run(settings.reload_interval)))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool.shutdown(wait=False, cancel_futures=True)
        checker.shutdown()
        if state.engine is not None:
            state.engine.shutdown()
        await tracing.aclose()

    routes = [
        Route(
            path,
            InferenceEndpoint(
                protocol,
                state,
                limiter,
                metrics,
                pool,
                checker,
                settings.body_timeout,
                settings.send_timeout,
                cache,
                tracing,
            ),
            methods=["POST"],
        )
        for path, protocol in PROTOCOL_PATHS.items()
    ]
    routes += [
        Route(
            path,
            TokenizerEndpoint(path, state, lambda: in_force.model, pool, checker, settings.body_timeout),
            methods=["POST"],
        )
        for path in TOKENIZER_PATHS
    ]
    routes += info_routes(
        state, model, metrics, lambda: watcher.status() if watcher else {"version": None},
        metrics_here=settings.metrics_port is None,
    )  # fmt: skip
    middleware = [
        Middleware(RequestObserver, metrics=metrics, tracing=tracing),
        Middleware(APIKeyAuth, keys=lambda: in_force.keys),
        Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
    ]
    handlers = {APIError: _api_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)


def _error_response(request: Request, error: APIError) -> Response:
    note_error(request.scope, error)
    return Response(error_bytes(error), error.status, error.headers, media_type="application/json")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return _error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return _error_response(request, APIError(str(exc.detail), status=exc.status_code, type=kind))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return _error_response(request, APIError("Internal server error", status=500, type="internal_error"))
