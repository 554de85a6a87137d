"""The router's Starlette app: the forwarded routes, `/health`, `/ready`, `/metrics`, and the lifespan that probes
endpoints and closes the connection pools."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.errors import RouterError, send_error
from vif.runtime.router.holding import Holding
from vif.runtime.router.key_table import MAX_KEYS
from vif.runtime.router.metrics import RouterMetrics
from vif.runtime.router.prefix import (
    DEFAULT_PREFIX_CHARS,
    EXTRACTORS,
    SESSION_HEADER,
    Extractor,
    routing_key,
    session_key,
)
from vif.runtime.router.probes import Prober
from vif.runtime.router.proxy import BrokenStream, Proxy, pool_client
from vif.runtime.router.strategies import DEFAULT_LOAD_FACTOR, build_strategy
from vif.runtime.shared.api_keys import MAX_BODY_BYTES, KeyCheck, load_api_keys
from vif.runtime.shared.asgi import (
    BodyTimeout,
    BodyTooLarge,
    ClientGone,
    json_response,
    read_body,
    until_disconnect,
)
from vif.runtime.shared.live_files import DEFAULT_INTERVAL, LiveFiles, fingerprint
from vif.runtime.shared.tracing import Tracing

# Forwarded without a routing key: they carry no prompt worth keeping near its cache.
PLAIN_ROUTES = {"/v1/models": ["GET"], "/tokenize": ["POST"], "/detokenize": ["POST"]}


@dataclass(frozen=True)
class RouterSettings:
    model_name: str = "default"
    strategy: str = "prefix-hash"
    load_factor: float = DEFAULT_LOAD_FACTOR
    prefix_chars: int = DEFAULT_PREFIX_CHARS
    session_affinity: bool = False  # X-Session-Id, else `user`, keys a request instead of its prompt (prefix-hash)
    max_keys: int = MAX_KEYS  # routing keys remembered (prefixes, sessions); the least recently used leave first
    metrics_port: int | None = None  # /metrics on a listener of its own (shared/metrics_listener.py); None: here
    retries: int = 2
    cooldown: float = 5.0
    probe_interval: float = 1.0
    max_pending: int = 1024
    max_wait: float = 30.0
    max_body_bytes: int = MAX_BODY_BYTES  # the runtime's: a body it would refuse is never held
    body_timeout: float = 30.0
    connect_timeout: float = 5.0
    first_byte_timeout: float = 300.0  # to a replica's status line: covers queueing and a whole long answer
    idle_timeout: float = 60.0  # the longest silence inside a response that started
    api_keys: tuple[str, ...] = ()  # the model's: checked before a body is read or a request held
    api_keys_file: Path | None = None  # more of them, a key a line, read again when it changes
    reload_interval: float = DEFAULT_INTERVAL


@dataclass
class Router:
    """Everything one router holds, on `app.state.router` for tests and the server."""

    settings: RouterSettings
    endpoints: EndpointSet
    holding: Holding
    metrics: RouterMetrics
    proxy: Proxy
    prober: Prober
    keys: KeyCheck
    tracing: Tracing


class ForwardedRoute:
    """An ASGI endpoint that forwards one path's requests, routed by the key `extract` finds in the body."""

    def __init__(self, router: Router, extract: Extractor | None) -> None:
        self.router = router
        self.extract = extract

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings, metrics = self.router.settings, self.router.metrics
        status: int | str
        try:
            self.authenticate(scope)
            with self.router.tracing.server(f"{scope['method']} {scope['path']}", scope["headers"]) as span:
                body = await self.read_body(receive)
                key = self.key(scope, body)
                status = await until_disconnect(receive, self.router.proxy.forward(scope, body, key, send))
                if span is not None:
                    span.set_attribute("http.response.status_code", status)
        except ClientGone:
            status = "client-gone"
        except RouterError as error:
            await send_error(send, error)
            status = error.status
        except BrokenStream:
            status = "broken-stream"  # the response stays unfinished: uvicorn closes the connection
        metrics.requests.labels(settings.model_name, str(status)).inc()

    def key(self, scope: Scope, body: bytes) -> str | None:
        """What the strategy routes by: the session's name with session affinity, else the prompt's start."""
        settings = self.router.settings
        if self.extract is None:
            return None
        if settings.session_affinity:
            session = next((v for k, v in scope["headers"] if k == SESSION_HEADER), None)
            if session:
                return session_key(session.decode("latin-1"), settings.prefix_chars)
        if not body:
            return None
        return routing_key(self.extract, body, settings.prefix_chars, by_user=settings.session_affinity)

    def authenticate(self, scope: Scope) -> None:
        """Before the body is read: an unauthenticated request takes no memory, no place among the held ones,
        and does not wake a model scaled to zero."""
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if not self.router.keys.accepts(authorization):
            raise RouterError(
                "Invalid or missing API key. Send it as 'Authorization: Bearer KEY'.", status=401,
                type="authentication_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip

    async def read_body(self, receive: Receive) -> bytes:
        settings = self.router.settings
        try:
            return await read_body(receive, settings.body_timeout, settings.max_body_bytes)
        except BodyTooLarge:
            raise RouterError(
                f"The request body is larger than {settings.max_body_bytes} bytes.", status=413,
                type="invalid_request_error", code="body_too_large",
            ) from None  # fmt: skip
        except BodyTimeout:
            raise RouterError(
                f"The request body did not arrive within {settings.body_timeout:g} seconds.", status=408,
                type="invalid_request_error", code="body_timeout",
            ) from None  # fmt: skip


def read_keys(settings: RouterSettings) -> KeyCheck:
    """The keys given at start-up and those the keys file holds now (LookupError, OSError: it holds none)."""
    from_file = load_api_keys((), settings.api_keys_file, environ={}) if settings.api_keys_file else ()
    return KeyCheck(settings.api_keys + from_file)


def create_app(
    endpoints: EndpointSet,
    settings: RouterSettings | None = None,
    discovery: Callable[[], Coroutine[Any, Any, None]] | None = None,
    tracing: Tracing | None = None,
) -> Starlette:
    """The router over `endpoints`; `discovery`, if given, runs for the app's lifetime and keeps them current."""
    settings = settings or RouterSettings()
    tracing = tracing or Tracing()
    holding = Holding(endpoints, settings.max_pending, settings.max_wait)
    metrics = RouterMetrics(settings.model_name, endpoints, lambda: holding.pending)
    pool = pool_client(settings.connect_timeout)
    proxy = Proxy(
        endpoints, build_strategy(settings.strategy, settings.load_factor, settings.max_keys), holding, metrics, pool,
        retries=settings.retries, cooldown=settings.cooldown, first_byte_timeout=settings.first_byte_timeout,
        idle_timeout=settings.idle_timeout, tracing=tracing,
    )  # fmt: skip
    probe_client = httpx.AsyncClient(trust_env=False)
    prober = Prober(endpoints, probe_client, settings.probe_interval)
    keys_paths = [settings.api_keys_file] if settings.api_keys_file is not None else []
    version = fingerprint(keys_paths)  # before the read: a change in between is then read again, not lost
    router = Router(settings, endpoints, holding, metrics, proxy, prober, read_keys(settings), tracing)
    keys_file = None
    if keys_paths:
        keys_file = LiveFiles(keys_paths, lambda: read_keys(settings), partial(setattr, router, "keys"), version)

    async def health(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(request: Request) -> Response:
        ok = endpoints.any_ready()
        return json_response({"status": "ready" if ok else "no ready replica"}, 200 if ok else 503)

    async def live_config(request: Request) -> Response:
        return json_response(keys_file.status() if keys_file else {"version": None})

    async def metrics_page(request: Request) -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(router.prober.run(), name="probe-endpoints")]
        if discovery is not None:
            tasks.append(asyncio.create_task(discovery(), name="discover-endpoints"))
        if keys_file is not None:
            tasks.append(asyncio.create_task(keys_file.run(settings.reload_interval), name="reload-keys"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.aclose()
            await probe_client.aclose()
            await tracing.aclose()

    routes = [
        *(Route(path, ForwardedRoute(router, extract), methods=["POST"]) for path, extract in EXTRACTORS.items()),
        *(Route(path, ForwardedRoute(router, None), methods=methods) for path, methods in PLAIN_ROUTES.items()),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        *([Route("/metrics", metrics_page, methods=["GET"])] if settings.metrics_port is None else []),
        Route("/live-config", live_config, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.router = router
    return app
