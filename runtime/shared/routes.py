"""The inference paths both processes serve, by protocol: the runtime's app and middleware, and the router's
forwarded routes, read this one table (the unversioned paths are aliases that OpenAI clients configured with a
base URL without `/v1` send)."""

from __future__ import annotations

from typing import Literal

Protocol = Literal["chat", "completion", "generate"]

PROTOCOL_PATHS: dict[str, Protocol] = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/completions": "completion",
    "/completions": "completion",
    "/generate": "generate",
}
