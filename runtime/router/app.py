"""The router's Starlette app: the forwarded routes, `/health`, `/ready`, `/metrics`, and the lifespan that probes
endpoints and closes the connection pools."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.errors import RouterError, send_error
from vif.runtime.router.fair_queue import FairQueue
from vif.runtime.router.holding import Holding
from vif.runtime.router.key_table import MAX_KEYS
from vif.runtime.router.kv_events import DEFAULT_EVENTS_PORT, KvEvents
from vif.runtime.router.kv_index import DEFAULT_MAX_BLOCKS, KvIndex
from vif.runtime.router.metrics import KvIndexCollector, RouterMetrics
from vif.runtime.router.prefix import (
    DEFAULT_PREFIX_CHARS,
    EXTRACTORS,
    SESSION_HEADER,
    Extractor,
    routing_key,
    session_key,
)
from vif.runtime.router.probes import Prober
from vif.runtime.router.prompt_tokens import RemoteTokenizer
from vif.runtime.router.proxy import BrokenStream, Proxy
from vif.runtime.router.quota import Decision, LocalQuota, Quota, RedisQuota
from vif.runtime.router.strategies import DEFAULT_LOAD_FACTOR, KvAware, build_strategy
from vif.runtime.router.usage import UsageMeter, ask_for_usage, estimate_tokens
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
from vif.runtime.shared.routes import PROTOCOL_PATHS, Protocol
from vif.runtime.shared.tenants import Limits, read_tenants, watched_files
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
    kv_events_port: int = DEFAULT_EVENTS_PORT  # kv-aware: where each replica publishes its KV cache events
    kv_events_port_offset: int | None = None  # kv-aware: instead, each replica's HTTP port plus this (one host)
    max_cached_blocks: int = DEFAULT_MAX_BLOCKS  # kv-aware: per replica; the first learned leave first
    metrics_port: int | None = None  # /metrics on a listener of its own (shared/metrics_listener.py); None: here
    retries: int = 2
    cooldown: float = 5.0
    probe_interval: float = 1.0
    max_pending: int = 1024
    max_wait: float = 30.0  # in the holding queue (no replica ready), and again in the fair queue (all full)
    max_in_flight_per_replica: int = 0  # past it, requests wait in the fair queue (fair_queue.py); 0: never
    max_body_bytes: int = MAX_BODY_BYTES  # the runtime's: a body it would refuse is never held
    body_timeout: float = 30.0
    connect_timeout: float = 5.0
    first_byte_timeout: float = 300.0  # to a replica's status line: covers queueing and a whole long answer
    idle_timeout: float = 60.0  # the longest silence inside a response that started
    api_keys: tuple[str, ...] = ()  # the model's: checked before a body is read or a request held
    api_keys_file: Path | None = None  # more of them, a key a line, read again when it changes
    tenants_file: Path | None = None  # named keys and their limits (shared/tenants.py), read again when it changes
    redis_url: str | None = None  # where every router of the model keeps the limits' buckets (router/quota.py)
    quota_scope: str | None = None  # whose buckets in Redis (the operator: namespace/name); None: model_name
    redis_down: Literal["open", "closed"] = "open"  # while Redis is away: decide locally, or refuse with 503
    router_replicas: int = 1  # without Redis, each router enforces 1/router_replicas of every limit
    reload_interval: float = DEFAULT_INTERVAL


@dataclass(frozen=True)
class Access:
    """Who may call, and the limits of each (a tenant missing from `limits` has none)."""

    keys: KeyCheck
    limits: dict[str, Limits]
    tenants: bool  # named tenants are configured: their usage is counted and reported


@dataclass
class Router:
    """Everything one router holds, on `app.state.router` for tests and the server."""

    settings: RouterSettings
    endpoints: EndpointSet
    holding: Holding
    fair: FairQueue
    metrics: RouterMetrics
    proxy: Proxy
    prober: Prober
    access: Access
    quota: Quota
    tracing: Tracing
    tokenizer: RemoteTokenizer | None = None  # kv-aware: the prompts' token ids, from a replica


class ForwardedRoute:
    """An ASGI endpoint that forwards one path's requests, routed by the key `extract` finds in the body."""

    def __init__(self, router: Router, extract: Extractor | None, protocol: Protocol | None = None) -> None:
        self.router = router
        self.extract = extract
        self.protocol = protocol

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings, metrics = self.router.settings, self.router.metrics
        status: int | str
        tenant, decision, meter = None, None, None
        try:
            tenant = self.authenticate(scope)
            decision = await self.admit(tenant) if self.extract is not None else None
            with self.router.tracing.server(f"{scope['method']} {scope['path']}", scope["headers"]) as span:
                body = await self.read_body(receive)
                key = self.key(scope, body)
                if self.router.access.tenants and tenant is not None and self.extract is not None:
                    body, meter = self.metered(tenant, body)
                    await meter.settle()  # the prompt's estimate, before any work is done
                headers = decision.headers() if decision is not None else {}
                forwarded = self.forward(scope, body, key, send, headers, meter, tenant)
                status = await until_disconnect(receive, forwarded)
                if span is not None:
                    span.set_attribute("http.response.status_code", status)
        except ClientGone:
            status = "client-gone"
        except RouterError as error:
            await send_error(send, error)
            status = error.status
        except BrokenStream:
            status = "broken-stream"  # the response stays unfinished: uvicorn closes the connection
        finally:
            if meter is not None:
                await meter.settle()  # a stream cut short is charged what it produced
            if decision is not None and tenant is not None:
                await self.router.quota.release(tenant, decision)
        metrics.requests.labels(settings.model_name, str(status)).inc()
        if self.router.access.tenants and tenant is not None:
            metrics.count_tenant(tenant, status, meter)

    async def forward(
        self,
        scope: Scope,
        body: bytes,
        key: str | None,
        send: Send,
        headers: dict[str, str],
        meter: UsageMeter | None,
        tenant: str | None,
    ) -> int:
        """The request to a replica, once the fair queue gives an inference request a place (`/v1/models`,
        `/tokenize` and the like take none, and count against no limit). Watched for the client leaving from the
        start, kv-aware's tokenizing included."""
        proxy = self.router.proxy
        if self.extract is None:
            return await proxy.forward(scope, body, key, send, headers, meter)
        tokens = await self.tokens(scope, body)
        waited = time.monotonic()
        async with self.router.fair.slot(tenant or ""):
            if meter is not None and tenant is not None:
                self.router.metrics.queue_seconds.labels(self.router.settings.model_name, tenant).observe(
                    time.monotonic() - waited
                )
            return await proxy.forward(scope, body, key, send, headers, meter, tokens)

    async def tokens(self, scope: Scope, body: bytes) -> Sequence[int] | None:
        """With `kv-aware`, the prompt's token ids, from the least busy ready replica; else None."""
        tokenizer, ready = self.router.tokenizer, self.router.endpoints.ready()
        if tokenizer is None or self.protocol is None or not body or not ready:
            return None
        replica = min(ready, key=lambda e: e.in_flight)
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        return await tokenizer.tokens(replica.url, self.protocol, body, authorization)

    async def admit(self, tenant: str | None) -> Decision | None:
        """The tenant's place under its limits, before the body is read (a refused request takes no memory)."""
        limits = self.router.access.limits.get(tenant) if tenant is not None else None
        if tenant is None or limits is None or not limits.any():
            return None
        decision = await self.router.quota.admit(tenant, limits)
        if decision.refused is not None:
            raise decision.error(tenant)
        return decision

    def metered(self, tenant: str, body: bytes) -> tuple[bytes, UsageMeter]:
        """The body to forward (a stream asks for its usage) and the meter that counts the answer's tokens."""
        wants_usage = True
        if self.protocol in ("chat", "completion"):
            body, wants_usage = ask_for_usage(body)
        limits = self.router.access.limits.get(tenant) or Limits()
        quota, fair = self.router.quota, self.router.fair

        async def charge(tokens: int) -> None:
            fair.charge(tenant, tokens)
            await quota.charge(tenant, limits, tokens)

        return body, UsageMeter(charge, wants_usage, estimate_tokens(body))

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

    def authenticate(self, scope: Scope) -> str | None:
        """Before the body is read: an unauthenticated request takes no memory, no place among the held ones,
        and does not wake a model scaled to zero. The key's tenant; None when the model takes any request."""
        keys = self.router.access.keys
        if not keys.owners:
            return None
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        tenant = keys.owner(authorization)
        if tenant is None:
            raise RouterError(
                "Invalid or missing API key. Send it as 'Authorization: Bearer KEY'.", status=401,
                type="authentication_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        return tenant

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


def read_access(settings: RouterSettings) -> Access:
    """The keys given at start-up, those the keys file holds now, and the tenants file's (LookupError, OSError,
    ValueError: the files hold no key, or are not valid)."""
    plain = settings.api_keys
    if settings.api_keys_file is not None:
        plain += load_api_keys((), settings.api_keys_file, environ={})
    if settings.tenants_file is None:
        return Access(KeyCheck(plain), {}, tenants=False)
    table = read_tenants(settings.tenants_file, plain)
    return Access(KeyCheck(owners=table.owners), table.limits, tenants=True)


def watched(settings: RouterSettings) -> list[Path]:
    """The files whose change is read again: the keys file, the tenants file and the key files it names."""
    paths = [settings.api_keys_file] if settings.api_keys_file is not None else []
    return paths + (watched_files(settings.tenants_file) if settings.tenants_file is not None else [])


def build_quota(settings: RouterSettings) -> Quota:
    local = LocalQuota(settings.router_replicas)
    if settings.redis_url is None:
        return local
    return RedisQuota(settings.redis_url, settings.quota_scope or settings.model_name, settings.redis_down, local)


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
    fair = FairQueue(endpoints, settings.max_in_flight_per_replica, settings.max_wait)
    metrics = RouterMetrics(settings.model_name, endpoints, lambda: holding.pending + fair.waiting)
    index = KvIndex(settings.max_cached_blocks) if settings.strategy == KvAware.name else None
    strategy = build_strategy(settings.strategy, settings.load_factor, settings.max_keys, index)
    proxy = Proxy(
        endpoints, strategy, holding, metrics, settings.connect_timeout,
        retries=settings.retries, cooldown=settings.cooldown, first_byte_timeout=settings.first_byte_timeout,
        idle_timeout=settings.idle_timeout, per_replica=settings.max_in_flight_per_replica, tracing=tracing,
    )  # fmt: skip
    # The router's own calls to its replicas (probes, kv-aware's tokenizing), apart from the forwarded requests'
    side_client = httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=None))
    prober = Prober(endpoints, side_client, settings.probe_interval)
    version = fingerprint(watched(settings))  # before the read: a change in between is then read again, not lost
    quota = build_quota(settings)
    router = Router(settings, endpoints, holding, fair, metrics, proxy, prober, read_access(settings), quota, tracing)
    kv_events = None
    if index is not None:
        kv_events = KvEvents(endpoints, index, settings.kv_events_port, settings.kv_events_port_offset)
        router.tokenizer = RemoteTokenizer(side_client)
        metrics.registry.register(KvIndexCollector(index))
    if isinstance(quota, RedisQuota):
        quota.on_error = metrics.quota_store_errors.labels(settings.model_name).inc
    keys_file = None
    if watched(settings):
        apply = partial(setattr, router, "access")
        keys_file = LiveFiles(partial(watched, settings), lambda: read_access(settings), apply, version)

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
        tasks.append(asyncio.create_task(fair.follow(), name="fair-queue"))
        if discovery is not None:
            tasks.append(asyncio.create_task(discovery(), name="discover-endpoints"))
        if keys_file is not None:
            tasks.append(asyncio.create_task(keys_file.run(settings.reload_interval), name="reload-keys"))
        if kv_events is not None:
            tasks.append(asyncio.create_task(kv_events.run(), name="kv-events"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await proxy.aclose()
            await side_client.aclose()
            await quota.aclose()
            await tracing.aclose()

    routes = [
        *(
            Route(path, ForwardedRoute(router, extract, PROTOCOL_PATHS[path]), methods=["POST"])
            for path, extract in EXTRACTORS.items()
        ),
        *(Route(path, ForwardedRoute(router, None), methods=methods) for path, methods in PLAIN_ROUTES.items()),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        *([Route("/metrics", metrics_page, methods=["GET"])] if settings.metrics_port is None else []),
        Route("/live-config", live_config, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.router = router
    return app
