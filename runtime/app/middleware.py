"""Pure ASGI middleware: request ids, logs and metrics; API keys; the body size limit.

Pure ASGI (not `BaseHTTPMiddleware`) so streamed responses pass through untouched and cheaply.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vif.runtime.app.errors import send_error
from vif.runtime.app.logs import request_id_var
from vif.runtime.protocols.errors import APIError
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.shared.api_keys import KeyCheck
from vif.runtime.shared.routes import PROTOCOL_PATHS
from vif.runtime.shared.tracing import Tracing

log = logging.getLogger("vif.runtime.access")

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json", "/live-config"})
REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def header(scope: Scope, name: bytes) -> bytes | None:
    """One request header (lower-case name), without building a dict of them all on every request."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def request_id(scope: Scope) -> str:
    """The client's `X-Request-Id` when it is a plain token (it goes into logs and headers), else a new one."""
    given = header(scope, b"x-request-id")
    return given.decode() if given is not None and REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def printable(text: str) -> str:
    """Control characters escaped, so a path cannot forge or break log lines."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class RequestObserver:
    """Gives each request an id (the client's `X-Request-Id` if well-formed, else new), logs it, records its
    metrics, and traces an inference or tokenizer request in a span that continues the client's trace."""

    def __init__(self, app: ASGIApp, metrics: RuntimeMetrics, tracing: Tracing) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        protocol = PROTOCOL_PATHS.get(scope["path"])
        status, started = 500, time.perf_counter()
        if protocol:
            self.metrics.request_started(protocol)

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", rid.encode()),
                ]
            await send(message)

        traced = self.tracing.on and scope["path"] not in OPEN_PATHS
        span_name = f"{scope['method']} {scope['path']}"
        with (
            self.tracing.server(span_name, scope["headers"], **{"vif.request_id": rid}) if traced
            else contextlib.nullcontext()
        ) as span:  # fmt: skip
            try:
                await self.app(scope, receive, observed_send)
            finally:  # inside the span: the access log line carries its trace
                seconds = time.perf_counter() - started
                served = scope["state"].get("model")  # set by the endpoint once the body named it
                if protocol:
                    self.metrics.request_finished(protocol, status, seconds, served)
                    if status >= 400:
                        self.metrics.count_error(protocol, scope["state"].get("error_type", "unknown"), served)
                if span is not None:
                    span.set_attributes({"http.response.status_code": status, "vif.model": served or ""})
                tenant = scope["state"].get("tenant")  # whose key it was (never the key): APIKeyAuth
                if tenant is None:
                    log.info("%s %s %d %.1fms", scope["method"], printable(scope["path"]), status, seconds * 1000)
                else:
                    log.info("%s %s %d %.1fms tenant=%s", scope["method"], printable(scope["path"]), status,
                             seconds * 1000, tenant, extra={"tenant": tenant})  # fmt: skip
                request_id_var.reset(token)


class APIKeyAuth:
    """`Authorization: Bearer KEY` against several keys, compared in constant time; probes stay open."""

    def __init__(self, app: ASGIApp, keys: Callable[[], KeyCheck]) -> None:
        """`keys`: the check in force for each request (the keys reload live)."""
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        open_path = scope["type"] != "http" or scope["path"] in OPEN_PATHS
        keys = self.keys()
        if open_path or not keys.owners:
            return await self.app(scope, receive, send)
        tenant = keys.owner(header(scope, b"authorization"))
        if tenant is not None:
            scope.setdefault("state", {})["tenant"] = tenant  # for the access log line
            return await self.app(scope, receive, send)
        exc = APIError(
            "Invalid or missing API key. Send it as 'Authorization: Bearer KEY'.",
            status=401,
            type="authentication_error",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await send_error(scope, send, exc)


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
            return await send_error(scope, send, self._too_large())
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)
