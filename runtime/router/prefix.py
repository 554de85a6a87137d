"""The routing key: the start of the prompt as the engine will see it, so requests that share a cached prefix
share a key.

- chat (`/v1/chat/completions`): the leading messages, up to and including the first user message. Every turn of a
  conversation starts with them, so a conversation stays on the replica holding its earlier turns; requests that
  share only a long system prompt share a key too.
- `/generate`: the same from `system_info` and the history (the first user turn is `history_input[0]`, else the
  prompt), because the runtime renders it as those chat messages.
- `/v1/completions`: the prompt's leading characters (the first prompt of a batch).

At most `chars` characters are kept: two requests whose rendered starts agree that far are routed alike. The body
is parsed once, with orjson, and only these fields are looked at; a body the router cannot read, or one larger
than `max_parse_bytes`, has no key (the strategy then goes by load) and is left for the replica to refuse.

With session affinity on, a request that names its session (the `X-Session-Id` header, else OpenAI's `user` field)
is keyed by that name instead: a client's whole session stays on one replica, whatever its prompts share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from vif.runtime.shared.routes import PROTOCOL_PATHS, Protocol

DEFAULT_PREFIX_CHARS = 256
MAX_PARSE_BYTES = 1 << 20
SEPARATOR = "\x1e"  # between messages, so ["ab", "c"] and ["a", "bc"] differ
SESSION_HEADER = b"x-session-id"
SESSION = "\x1fsession:"  # the start of a session's key: no prompt's key starts with it


def _text(content: Any) -> str:
    """A message's content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def chat_prefix(body: dict[str, Any]) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    parts = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        role = message.get("role")
        parts.append(f"{role}:{_text(message.get('content'))}")
        if role == "user":
            break
    return SEPARATOR.join(parts)


def generate_prefix(body: dict[str, Any]) -> str | None:
    history = body.get("history_input")
    first_turn = history[0] if isinstance(history, list) and history else body.get("prompt")
    if not isinstance(first_turn, str):
        return None
    system = body.get("system_info")
    parts = [f"system:{system}"] if isinstance(system, str) and system else []
    return SEPARATOR.join([*parts, f"user:{first_turn}"])


def completion_prefix(body: dict[str, Any]) -> str | None:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch goes to one replica: its first prompt decides
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt[:64]):
        return "tokens:" + ",".join(map(str, prompt[:64]))  # token ids: a few suffice to tell prompts apart
    return None


Extractor = Callable[[dict[str, Any]], str | None]

_BY_PROTOCOL: dict[Protocol, Extractor] = {
    "chat": chat_prefix,
    "completion": completion_prefix,
    "generate": generate_prefix,
}
# Every inference path the runtime serves, aliases too: a path missing here would be a 404 at the router.
EXTRACTORS: dict[str, Extractor] = {path: _BY_PROTOCOL[protocol] for path, protocol in PROTOCOL_PATHS.items()}


def parse_body(body: bytes, max_parse_bytes: int = MAX_PARSE_BYTES) -> dict[str, Any] | None:
    """A request body as the router reads it: a JSON object no larger than `max_parse_bytes`, else None."""
    if len(body) > max_parse_bytes:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def routing_key(
    extract: Extractor,
    body: bytes,
    chars: int = DEFAULT_PREFIX_CHARS,
    max_parse_bytes: int = MAX_PARSE_BYTES,
    by_user: bool = False,
) -> str | None:
    """The key of one request body: None for a body that is not a JSON object, is too big, or has no prompt.
    `by_user`: a body's non-empty `user` field is its session's name, and keys it."""
    parsed = parse_body(body, max_parse_bytes)
    if parsed is None:
        return None
    if by_user and isinstance(user := parsed.get("user"), str) and user:
        return session_key(user, chars)
    prefix = extract(parsed)
    return prefix[:chars] if prefix else None


def session_key(name: str, chars: int = DEFAULT_PREFIX_CHARS) -> str:
    """The key of a named session (its first `chars` characters)."""
    return SESSION + name[:chars]
