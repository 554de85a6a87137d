"""Forwarding one request: pick a replica, send, and relay the response to the client as it arrives.

- Connections to replicas are pooled and kept alive, with no cap (each replica's own concurrency limit answers
  429): one `aiohttp` session for the router. Its C parser and plain-asyncio pool cost less CPU per request than
  httpx's pure-Python stack (docs/router.md, "Holding thousands of streams").
- The response is relayed chunk by chunk as the replica's socket yields it (no content decoding, no buffering),
  status and headers included, so server-sent events reach the client when the replica sends them.
- A failure before the response started (connection refused, reset, closed without an answer, no status line
  within `first_byte_timeout`, or a 503: the replica did not serve it, as its engine died, is loading or shut down
  first) is retried on another replica, at most `retries` times; nothing has reached the client, and an inference
  request has no side effect a second replica could repeat. The last try's 503 goes to the client as it is.
  Once the status line went out it is never retried: the client's response ends unfinished, as the replica's did,
  and a stream of server-sent events ends with an error event saying so.
- Two timeouts bound a replica that accepts a connection and then says nothing (a wedged engine, a frozen node, a
  SIGSTOP: the kernel still completes the handshake). `first_byte_timeout` is the wait for the status line: a
  stream's comes with its first token, a whole answer's when it is complete, so it must cover queueing and the
  longest whole generation. `idle_timeout` is the longest silence between two chunks of a response that started
  (a malformed chunk ends that way too: aiohttp's parser drops the body without waking its reader).
- A replica that failed any of these ways is ejected for `cooldown` seconds and then probed back (`probes.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence

import aiohttp
import orjson
from starlette.types import Scope, Send
from yarl import URL

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


class FirstByteTimeout(aiohttp.ServerTimeoutError):
    """No status line from the replica within the first-byte timeout: retried like a refused connection."""


class ReplicaSilent(Exception):
    """The replica sent nothing for the idle timeout in the middle of a response."""


class SilenceWatch:
    """Fails a response's body with `ReplicaSilent` once the router has waited `seconds` for its next chunk.

    One timer for the whole body, re-armed only when it fires early, where `asyncio.timeout` around each read
    made and cancelled a timer per chunk (8% of the router's CPU on streams). The relay sets `listening` to when
    it began waiting for the replica, and back to None while it hands a chunk to the client: a slow client is not a
    silent replica."""

    def __init__(self, body: aiohttp.StreamReader, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.body = body
        self.seconds = seconds
        self.listening: float | None = None
        self.timer = self.loop.call_later(seconds, self.check)

    def check(self) -> None:
        now = self.loop.time()
        due = (now if self.listening is None else self.listening) + self.seconds
        if now >= due:
            self.body.set_exception(ReplicaSilent(f"nothing for {self.seconds:g} s"))
        else:
            self.timer = self.loop.call_at(due, self.check)

    def cancel(self) -> None:
        self.timer.cancel()


def upstream_session(connect_timeout: float = 5.0) -> aiohttp.ClientSession:
    """The router's client to its replicas. No timeout of aiohttp's own but the connect's (`Proxy` bounds the
    status line and each silence between chunks separately), no cap on connections. An idle connection is kept 4 s,
    less than the replicas' 5 (uvicorn's default, as in vLLM's server): the router lets it go first, so a request is
    never sent on a connection the replica is closing (a POST is not retried on a fresh one, and the replica would
    be ejected for it). It adds no header of its own (no Accept-Encoding or Content-Type the client did not send),
    decodes nothing and keeps no cookies: the bytes go through as the replica sent them."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def forwarded_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The client's headers for the replica: Authorization, X-Request-Id and the rest; not the hop-by-hop ones."""
    return [(k, v) for k, v in headers if k.lower() not in NOT_FORWARDED]


def failure_reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, FirstByteTimeout):
        return "first-byte-timeout"
    return "connect" if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError) else "reset"


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
        connect_timeout: float = 5.0,
        retries: int = 2,
        cooldown: float = 5.0,
        first_byte_timeout: float = 300.0,
        idle_timeout: float = 60.0,
        per_replica: int = 0,
        tracing: Tracing | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.strategy = strategy
        self.holding = holding
        self.metrics = metrics
        self.connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self.retries = retries
        self.cooldown = cooldown
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self.per_replica = per_replica
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
            url = URL(endpoint.url + upstream_target(scope), encoded=True)  # as the client sent it, not requoted
            try:
                upstream = await self.send_for_status(scope["method"], url, headers, body)
            except aiohttp.ClientError as exc:
                reason = failure_reason(exc)
                self.eject(endpoint, reason, type(exc).__name__)
                if attempt == self.retries:
                    raise RouterError(
                        f"No replica answered after {attempt + 1} attempts.",
                        status=502, type="service_unavailable", code="replica_unreachable",
                    ) from None  # fmt: skip
                self.metrics.retries.labels(reason).inc()
                return None
            try:
                if upstream.status == 503 and attempt < self.retries:
                    self.eject(endpoint, "unavailable", "503")
                    self.metrics.retries.labels("unavailable").inc()
                    return None
                await self.relay(upstream, endpoint, send, added, meter)
            finally:
                upstream.release()  # back to the pool when read to its end; closed (the replica sees it) when not
            return upstream.status
        finally:
            endpoint.in_flight -= 1

    async def pick(self, key: str | None, tried: set[str], tokens: Sequence[int] | None = None) -> Endpoint:
        """A ready replica not yet tried for this request (any ready one if all were), below `per_replica` requests
        in flight if one is; waits while none is ready."""
        await self.holding.wait_for_ready()
        ready = self.endpoints.ready()
        candidates = [e for e in ready if e.url not in tried] or ready
        if self.per_replica:
            # The fair queue let this request in because a place is free: it goes where that place is, not after
            # a full replica's requests inside its engine (the strategy's load bound alone would allow that).
            candidates = [e for e in candidates if e.in_flight < self.per_replica] or candidates
        choice = self.strategy.choose(candidates, key, tokens)
        self.metrics.decisions.labels(self.strategy.name, choice.outcome).inc()
        return next(e for e in candidates if e.url == choice.url)

    @property
    def session(self) -> aiohttp.ClientSession:
        """Made on first use, inside the event loop it belongs to; closed by `aclose`."""
        if self._session is None:
            self._session = upstream_session(self.connect_timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send_for_status(
        self, method: str, url: URL, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> aiohttp.ClientResponse:
        """The replica's response once its status line and headers arrived, its body still to be read."""
        text_headers = [(k.decode("latin-1"), header_text(v)) for k, v in headers]
        try:
            async with asyncio.timeout(self.first_byte_timeout) as deadline:
                return await self.session.request(
                    method, url, headers=text_headers, data=body or None, allow_redirects=False
                )
        except TimeoutError:
            if not deadline.expired():
                raise  # aiohttp's own: the connect timeout
            raise FirstByteTimeout(f"no status line within {self.first_byte_timeout:g} s") from None

    async def relay(
        self,
        upstream: aiohttp.ClientResponse,
        endpoint: Endpoint,
        send: Send,
        added: list[tuple[bytes, bytes]],
        meter: UsageMeter | None,
    ) -> None:
        kept = [(k, v) for k, v in upstream.raw_headers if k.lower() not in HOP_BY_HOP]
        content_type = upstream.headers.get("content-type", "")
        if meter is not None:
            meter.start(content_type)
            # The meter may hold back a usage event the client did not ask for: the length is no longer known.
            kept = [(k, v) for k, v in kept if k.lower() != b"content-length"] if meter.stream else kept
        await send({"type": "http.response.start", "status": upstream.status, "headers": kept + added})
        silence = SilenceWatch(upstream.content, self.idle_timeout)
        try:
            while True:
                silence.listening = silence.loop.time()  # the replica's silence counts, not the client's reading
                chunk = await upstream.content.readany()
                silence.listening = None
                if not chunk:
                    break
                if meter is not None:
                    chunk = await meter.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, ReplicaSilent) as exc:
            stalled = isinstance(exc, ReplicaSilent)
            self.eject(endpoint, "idle-timeout" if stalled else "broken-stream", type(exc).__name__)
            if content_type.startswith("text/event-stream"):
                what = f"sent nothing for {self.idle_timeout:g} s" if stalled else "broke the stream"
                await send({"type": "http.response.body", "body": stream_error_event(f"The replica {what}.")})
            raise BrokenStream(endpoint.url) from exc
        finally:
            silence.cancel()
        rest = await meter.close() if meter is not None else b""
        await send({"type": "http.response.body", "body": rest, "more_body": False})

    def eject(self, endpoint: Endpoint, reason: str, detail: str) -> None:
        """Out of routing for the cooldown; `detail`, for the log: the exception's class, or the status."""
        if self.endpoints.eject(endpoint, self.cooldown):
            log.warning("ejected %s for %gs: %s (%s)", endpoint.url, self.cooldown, reason, detail)
            self.metrics.ejections.labels(endpoint.url, reason).inc()


def header_text(value: bytes) -> str:
    """A header value as aiohttp takes it, which it writes back as UTF-8: UTF-8 goes through byte for byte, anything
    else as Latin-1 (the only bytes HTTP itself defines)."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def upstream_target(scope: Scope) -> str:
    """The request's path and query as the client sent them."""
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (path + (b"?" + query if query else b"")).decode("latin-1")
