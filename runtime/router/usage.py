"""Counting a response's tokens on its way to the client, for a tenant's token limit and usage metrics.

- A whole answer (JSON) carries `usage`. The replica sends it only once it is complete, so the router holds it
  until its last byte, charges it, and then passes it on: a client that sends its next request the moment it has
  the answer finds its tokens charged already. Answers larger than `MAX_WHOLE_BYTES` are relayed without a count
  (no answer of a chat model is that large).
- A stream is asked for its usage (`stream_options.include_usage`, set by `ask_for_usage`), and counted as it
  passes: each event with a choice counts one completion token, charged every `CHARGE_EVERY` seconds, so a long
  stream counts against the minute it runs in; the usage event at the end sets the exact count (prompt tokens
  included), charged before any later event (`[DONE]`) passes. The client gets that event only if it asked for it
  itself. A stream cut short is charged what was counted.
- Before any of that, the prompt is charged as the body's size suggests (`estimate_tokens`), and corrected by the
  replica's count: a client that leaves before the usage event arrives has still paid for its prompt.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson

MAX_WHOLE_BYTES = 1 << 20
CHARGE_EVERY = 1.0  # seconds


def ask_for_usage(body: bytes) -> tuple[bytes, bool]:
    """The body to forward, and whether the client asked for the usage event itself. A stream's body gets
    `stream_options.include_usage`; any other body is forwarded as it is."""
    try:
        request = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return body, True  # the replica answers it with an error; nothing to count
    if not isinstance(request, dict) or request.get("stream") is not True:
        return body, True
    options = request.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body, True
    if options is not None and not isinstance(options, dict):
        return body, True  # invalid: the replica says so
    request["stream_options"] = {**(options or {}), "include_usage": True}
    return orjson.dumps(request), False


class UsageMeter:
    """One response's tokens: `feed` each chunk of its body (it returns what the client gets), then `close`."""

    def __init__(
        self,
        charge: Callable[[int], Awaitable[None]],
        client_wants_usage: bool,
        prompt_estimate: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`prompt_estimate`: the prompt's tokens as far as the body tells (`estimate_tokens`), charged by the
        first `settle` and corrected by the replica's usage, so a client that leaves before it is still charged."""
        self.charge = charge
        self.client_wants_usage = client_wants_usage
        self.clock = clock
        self.stream: bool | None = None  # known at the first chunk
        self.pending: bytes | None = b""  # an unfinished event, or a whole answer so far (None: too large, relayed)
        self.prompt_tokens = prompt_estimate
        self.completion_tokens = 0
        self.charged = 0
        self.exact = False  # the replica's usage was read
        self.last_charge = clock()

    def start(self, content_type: str) -> None:
        self.stream = content_type.startswith("text/event-stream")

    async def feed(self, chunk: bytes) -> bytes:
        if self.pending is None:
            return chunk  # too large to count
        if not self.stream:
            self.pending += chunk
            if len(self.pending) > MAX_WHOLE_BYTES:
                held, self.pending = self.pending, None
                return held
            return b""
        events = (self.pending + chunk).split(b"\n\n")
        self.pending = events.pop()
        if len(self.pending) > MAX_WHOLE_BYTES:  # no event is that large: not a stream the meter can read
            unread, self.pending = b"\n\n".join([*events, self.pending]), None
            return unread
        exact = self.exact
        kept = [event for event in events if self.read_event(event)]
        if self.exact > exact or self.clock() - self.last_charge >= CHARGE_EVERY:
            await self.settle()
        return b"".join(e + b"\n\n" for e in kept)

    def read_event(self, event: bytes) -> bool:
        """Count one event; whether it goes to the client."""
        if not event.startswith(b"data:"):
            return True
        data = event[5:].removeprefix(b" ")
        if data == b"[DONE]":
            return True
        if b'"usage"' in data:
            usage = self.usage_of(data)
            if usage is not None:
                self.exact = True
                self.prompt_tokens, self.completion_tokens = usage
                return self.client_wants_usage or b'"choices":[]' not in data
        if (b'"choices"' in data or b'"output"' in data) and not self.exact:  # OpenAI's chunks, /generate's
            self.completion_tokens += 1
        return True

    @staticmethod
    def usage_of(data: bytes) -> tuple[int, int] | None:
        try:
            usage = orjson.loads(data).get("usage")
            return int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            return None

    async def settle(self) -> None:
        """Charge what was counted and not yet charged (give back what an estimate took too much)."""
        self.last_charge = self.clock()
        due = self.prompt_tokens + self.completion_tokens - self.charged
        if due:
            await self.charge(due)
            self.charged += due

    async def close(self) -> bytes:
        """Charge the rest; what of the body is still to go to the client (a stream's last, unended event)."""
        if self.pending is None:
            await self.settle()
            return b""
        rest, self.pending = self.pending, b""
        if self.stream:
            if rest and not self.read_event(rest):
                rest = b""
        elif rest:
            usage = self.usage_of(rest)
            if usage is not None:
                self.prompt_tokens, self.completion_tokens = usage
        await self.settle()
        return rest


def estimate_tokens(body: bytes) -> int:
    """A prompt's tokens as its request body suggests, before the engine counts them: about four bytes a token for
    English text and JSON alike, which is what the body mostly is."""
    return len(body) // 4
