"""Errors the router itself answers with, in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.

Replicas' own errors pass through untouched; these are only for what the router decides (no ready replica, a body
too large or too slow, every attempt failed). vif.runtime.protocols.errors has the same shape, but importing it
would load pydantic and the runtime's request models into a process that needs neither.
"""

from __future__ import annotations

import orjson
from starlette.types import Send


class RouterError(Exception):
    def __init__(
        self, message: str, *, status: int, type: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}})


async def send_error(send: Send, error: RouterError) -> None:
    """The whole error response on a raw ASGI `send`."""
    body = error.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
