"""Forwarding one request: pick a replica, send, and relay the response to the client as it arrives.

- Connections to replicas are pooled and kept alive (one `httpx.AsyncClient` for the router).
- The response is relayed chunk by chunk as the replica's socket yields it (`aiter_raw`: no decoding, no
  buffering), status and headers included, so server-sent events reach the client when the replica sends them.
- A failure before the response started (connection refused, reset, closed without an answer, no status line
  within `first_byte_timeout`, or a 503: the replica did not serve it, as its engine died, is loading or shut down
  first) is retried on another replica, at most `retries` times; nothing has reached the client, and an inference
  request has no side effect a second replica could repeat. The last try's 503 goes to the client as it is.
  Once the status line went out it is never retried: the client's response ends unfinished, as the replica's did,
  and a stream of server-sent events ends with an error event saying so.
- Two timeouts bound a replica that accepts a connection and then says nothing (a wedged engine, a frozen node, a
  SIGSTOP: the kernel still completes the handshake). `first_byte_timeout` is the wait for the status line: a
  stream's comes with its first token, a whole answer's when it is complete, so it must cover queueing and the
  longest whole generation. `idle_timeout` is the longest silence between two chunks of a response that started.
- A replica that failed any of these ways is ejected for `cooldown` seconds and then probed back (`probes.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence

import httpx
import orjson
from starlette.types import Scope, Send

from vif.runtime.router.endpoints import Endpoint, EndpointSet
from vif.runtime.router.errors import RouterError
from vif.runtime.router.holding import Holding
from vif.runtime.router.metrics import RouterMetrics
from vif.runtime.router.strategies import Strategy
from vif.runtime.router.usage import UsageMeter
from vif.runtime.shared.tracing import Tracing

log = logging.getLogger(__name__)

# Headers about one connection, not the request (RFC 9110 7.6.1), plus those the client library sets itself
# (`expect: 100-continue` is between the client and the router, which has read the whole body).
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
     b"trailer", b"transfer-encoding", b"upgrade")
)  # fmt: skip
NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"expect"}


class BrokenStream(Exception):
    """The replica failed after the response had started: the client's response is left unfinished."""


class FirstByteTimeout(httpx.TransportError):
    """No status line from the replica within the first-byte timeout: retried like a refused connection."""


def pool_client(connect_timeout: float = 5.0, keepalive: int = 256) -> httpx.AsyncClient:
    """The router's client to its replicas: no read timeout of httpx's own (it would bound a whole answer and a
    stream's chunks alike; `Proxy` bounds each separately), no cap on connections (each replica's own
    concurrency limit answers 429), idle connections kept for reuse."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=connect_timeout, read=None, write=None, pool=None),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=keepalive, keepalive_expiry=30),
        follow_redirects=False,
        trust_env=False,
    )


def forwarded_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The client's headers for the replica: Authorization, X-Request-Id and the rest; not the hop-by-hop ones."""
    return [(k, v) for k, v in headers if k.lower() not in NOT_FORWARDED]


def failure_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, FirstByteTimeout):
        return "first-byte-timeout"
    return "connect" if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) else "reset"


def stream_error_event(message: str) -> bytes:
    """An OpenAI-shaped error as one server-sent event; the blank line first ends an event the replica had only
    half sent, so the client parses the error on its own."""
    error = {"error": {"message": message, "type": "service_unavailable", "code": "replica_stalled"}}
    return b"\n\ndata: " + orjson.dumps(error) + b"\n\n"


class Proxy:
    def __init__(
        self,
        endpoints: EndpointSet,
        strategy: Strategy,
        holding: Holding,
        metrics: RouterMetrics,
        client: httpx.AsyncClient,
        retries: int = 2,
        cooldown: float = 5.0,
        first_byte_timeout: float = 300.0,
        idle_timeout: float = 60.0,
        tracing: Tracing | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.strategy = strategy
        self.holding = holding
        self.metrics = metrics
        self.client = client
        self.retries = retries
        self.cooldown = cooldown
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self.tracing = tracing or Tracing()

    async def forward(
        self,
        scope: Scope,
        body: bytes,
        key: str | None,
        send: Send,
        headers: Mapping[str, str] | None = None,
        meter: UsageMeter | None = None,
        tokens: Sequence[int] | None = None,
    ) -> int:
        """Serve the request from a replica onto `send`, with `headers` added to the response's and its body
        passed through `meter`; the status the client got. Raises `RouterError` (no response started yet) or
        `BrokenStream` (the response is unfinished). `tokens`: the prompt's ids, for `kv-aware`."""
        added = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        tried: set[str] = set()
        for attempt in range(self.retries + 1):
            with self.tracing.span("route"):  # includes a hold while no replica is ready
                endpoint = await self.pick(key, tried, tokens)
            tried.add(endpoint.url)
            endpoint.in_flight += 1
            with self.tracing.span("forward", **{"vif.replica": endpoint.url, "vif.attempt": attempt}):
                status = await self.attempt(scope, body, send, endpoint, attempt, added, meter)
            if status is not None:
                return status
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def attempt(
        self,
        scope: Scope,
        body: bytes,
        send: Send,
        endpoint: Endpoint,
        attempt: int,
        added: list[tuple[bytes, bytes]],
        meter: UsageMeter | None,
    ) -> int | None:
        """One replica's try: the status the client got, or None when the replica could not be reached and another
        may be tried. `endpoint.in_flight` counts this try, and is given back here."""
        try:
            headers = self.tracing.outgoing(forwarded_headers(scope["headers"]))  # this try's span is the parent
            request = self.client.build_request(
                scope["method"], endpoint.url + upstream_target(scope), headers=headers, content=body or None
            )
            try:
                upstream = await self.send_for_status(request)
            except httpx.TransportError as exc:
                reason = failure_reason(exc)
                self.eject(endpoint, reason, type(exc).__name__)
                if attempt == self.retries:
                    raise RouterError(
                        f"No replica answered after {attempt + 1} attempts.",
                        status=502, type="service_unavailable", code="replica_unreachable",
                    ) from None  # fmt: skip
                self.metrics.retries.labels(reason).inc()
                return None
            if upstream.status_code == 503 and attempt < self.retries:
                await upstream.aclose()
                self.eject(endpoint, "unavailable", "503")
                self.metrics.retries.labels("unavailable").inc()
                return None
            try:
                await self.relay(upstream, endpoint, send, added, meter)
            finally:
                await upstream.aclose()
            return upstream.status_code
        finally:
            endpoint.in_flight -= 1

    async def pick(self, key: str | None, tried: set[str], tokens: Sequence[int] | None = None) -> Endpoint:
        """A ready replica not yet tried for this request (any ready one if all were); waits while none is."""
        await self.holding.wait_for_ready()
        ready = self.endpoints.ready()
        candidates = [e for e in ready if e.url not in tried] or ready
        choice = self.strategy.choose(candidates, key, tokens)
        self.metrics.decisions.labels(self.strategy.name, choice.outcome).inc()
        return next(e for e in candidates if e.url == choice.url)

    async def send_for_status(self, request: httpx.Request) -> httpx.Response:
        """The replica's response once its status line and headers arrived, its body still to be read."""
        try:
            async with asyncio.timeout(self.first_byte_timeout):
                return await self.client.send(request, stream=True)
        except TimeoutError:
            raise FirstByteTimeout(f"no status line within {self.first_byte_timeout:g} s", request=request) from None

    async def relay(
        self,
        upstream: httpx.Response,
        endpoint: Endpoint,
        send: Send,
        added: list[tuple[bytes, bytes]],
        meter: UsageMeter | None,
    ) -> None:
        kept = [(k, v) for k, v in upstream.headers.raw if k.lower() not in HOP_BY_HOP]
        if meter is not None:
            meter.start(upstream.headers.get("content-type", ""))
            # The meter may hold back a usage event the client did not ask for: the length is no longer known.
            kept = [(k, v) for k, v in kept if k.lower() != b"content-length"] if meter.stream else kept
        await send({"type": "http.response.start", "status": upstream.status_code, "headers": kept + added})
        chunks = upstream.aiter_raw()
        try:
            while True:
                async with asyncio.timeout(self.idle_timeout):  # the replica's silence, not the client's reading
                    chunk = await anext(chunks, None)
                if chunk is None:
                    break
                if meter is not None:
                    chunk = await meter.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (httpx.TransportError, TimeoutError) as exc:
            stalled = isinstance(exc, TimeoutError)
            self.eject(endpoint, "idle-timeout" if stalled else "broken-stream", type(exc).__name__)
            if upstream.headers.get("content-type", "").startswith("text/event-stream"):
                what = f"sent nothing for {self.idle_timeout:g} s" if stalled else "broke the stream"
                await send({"type": "http.response.body", "body": stream_error_event(f"The replica {what}.")})
            raise BrokenStream(endpoint.url) from exc
        rest = await meter.close() if meter is not None else b""
        await send({"type": "http.response.body", "body": rest, "more_body": False})

    def eject(self, endpoint: Endpoint, reason: str, detail: str) -> None:
        """Out of routing for the cooldown; `detail`, for the log: the exception's class, or the status."""
        if self.endpoints.eject(endpoint, self.cooldown):
            log.warning("ejected %s for %gs: %s (%s)", endpoint.url, self.cooldown, reason, detail)
            self.metrics.ejections.labels(endpoint.url, reason).inc()


def upstream_target(scope: Scope) -> str:
    """The request's path and query as the client sent them."""
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (path + (b"?" + query if query else b"")).decode("latin-1")
