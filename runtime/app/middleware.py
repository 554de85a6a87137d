"""Pure ASGI middleware: request ids, logs and metrics; API keys; body size; the concurrency limit.

Pure ASGI (not `BaseHTTPMiddleware`) so streamed responses pass through untouched and cheaply.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Sequence

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vif.runtime.app.logs import request_id_var
from vif.runtime.app.metrics import RuntimeMetrics
from vif.runtime.protocols.errors import APIError

log = logging.getLogger("vif.runtime.access")

PROTOCOL_PATHS = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/completions": "completion",
    "/completions": "completion",
    "/generate": "generate",
}
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json"})


def header(scope: Scope, name: bytes) -> bytes | None:
    """One request header (lower-case name), without building a dict of them all on every request."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def send_error(exc: APIError, scope: Scope, receive: Receive, send: Send) -> None:
    response = Response(orjson.dumps(exc.body()), exc.status, exc.headers, media_type="application/json")
    await response(scope, receive, send)


class RequestObserver:
    """Gives each request an id (from `X-Request-Id` or new), logs it, and records its metrics."""

    def __init__(self, app: ASGIApp, metrics: RuntimeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = (header(scope, b"x-request-id") or b"").decode("latin-1")[:128] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        protocol = PROTOCOL_PATHS.get(scope["path"])
        status, error_body, started = 500, bytearray(), time.perf_counter()
        if protocol:
            self.metrics.request_started(protocol)

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            elif message["type"] == "http.response.body" and status >= 400 and len(error_body) < 4096:
                error_body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            if protocol:
                self.metrics.request_finished(protocol, status, seconds)
                if status >= 400:
                    self.metrics.count_error(protocol, _error_type(bytes(error_body)))
            log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, seconds * 1000)
            request_id_var.reset(token)


def _error_type(body: bytes) -> str:
    try:
        return str(orjson.loads(body)["error"]["type"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "unknown"


class APIKeyAuth:
    """`Authorization: Bearer KEY` against several keys, compared in constant time; probes stay open."""

    def __init__(self, app: ASGIApp, api_keys: Sequence[str]) -> None:
        self.app = app
        # Digests: compare_digest on inputs of different lengths would tell the key's length.
        self.keys = [hashlib.sha256(k.encode()).digest() for k in api_keys if k]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        scheme, _, presented = (header(scope, b"authorization") or b"").partition(b" ")
        # Compare against every key so the time taken does not tell which key (or how much of it) matched.
        digest = hashlib.sha256(presented.strip()).digest()
        matched = [hmac.compare_digest(digest, key) for key in self.keys]
        if scheme.lower() == b"bearer" and any(matched):
            return await self.app(scope, receive, send)
        exc = APIError(
            "Invalid or missing API key. Send it as 'Authorization: Bearer KEY'.",
            status=401,
            type="authentication_error",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await send_error(exc, scope, receive, send)


class BodySizeLimit:
    """Refuses request bodies larger than `max_bytes` with 413, by Content-Length or while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> APIError:
        return APIError(
            f"The request body is larger than {self.max_bytes} bytes.", status=413, code="request_too_large"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await send_error(self._too_large(), scope, receive, send)
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)


class ConcurrencyLimit:
    """At most `limit` inference requests at once; past it 429 with Retry-After at once, never a queue."""

    def __init__(self, app: ASGIApp, limit: int | None, retry_after_seconds: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_seconds)
        self.active = 0  # one event loop: the check and the increment below cannot interleave

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit is None or scope["path"] not in PROTOCOL_PATHS:
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
            exc = APIError(
                f"The server is serving its limit of {self.limit} concurrent requests; retry later.",
                status=429,
                type="rate_limit_error",
                code="too_many_requests",
                headers={"Retry-After": self.retry_after},
            )
            return await send_error(exc, scope, receive, send)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
