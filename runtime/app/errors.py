"""The one place errors become bytes: HTTP error responses and streamed error events alike.

A serving class's `create_error_response` shapes the body of both; middleware, which runs before any serving
class is chosen, uses OpenAI's plain shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import Scope, Send

from vif.runtime.engine.types import EngineDeadError
from vif.runtime.protocols.errors import APIError

log = logging.getLogger(__name__)

ErrorShape = Callable[[APIError], dict[str, Any]]
JSON_HEADERS = [(b"content-type", b"application/json")]


def plain_shape(error: APIError) -> dict[str, Any]:
    return error.body()


def as_api_error(exc: BaseException) -> APIError:
    """Any failure as the error a client sees: a dead engine is 503, anything unexpected a sanitised 500."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, EngineDeadError):
        return APIError(str(exc), status=503, type="service_unavailable", code="engine_dead")
    log.error("request failed", exc_info=exc)
    return APIError("Internal server error", status=500, type="internal_error")


def error_bytes(error: APIError, shape: ErrorShape = plain_shape) -> bytes:
    return orjson.dumps(shape(error))


def note_error(scope: Scope, error: APIError) -> None:
    """Tell the request's metrics (`middleware.RequestObserver`) the type of the error it is answered with."""
    scope.setdefault("state", {})["error_type"] = error.type


async def send_error(scope: Scope, send: Send, error: APIError, shape: ErrorShape = plain_shape) -> None:
    """A whole JSON error response on a raw ASGI `send`."""
    note_error(scope, error)
    body = error_bytes(error, shape)
    headers = [*JSON_HEADERS, *((k.lower().encode(), v.encode()) for k, v in error.headers.items())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_event(error: APIError, shape: ErrorShape = plain_shape) -> bytes:
    """The error as the last server-sent event of a stream that had already started."""
    return b"data: " + error_bytes(error, shape) + b"\n\n"
