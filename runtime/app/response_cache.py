"""An exact-match cache of whole responses to deterministic requests, in the runtime's memory (docs/response-cache.md).

A request is cached when every choice it asks for is deterministic (temperature 0, or a fixed `seed`) and it does not
stream. Its key is the protocol, the name it is served under (the base model or an adapter), the API key it presented
(tenants never share entries) and the request as the engine sees it: the prompts' token ids after the chat template,
the sampling options, and the checked request that shapes the response (echo, logprobs, tools). A hit is the stored
answer with a new `id` and `created`. A hit takes no engine slot, but its bytes count in the limiter's budget of
unsent answers, and a shutdown waits for it like any request.

It lives in the runtime, not the router: only the runtime sees the request as the engine does, after the template,
so a changed template can never answer from the old one's entries, and a hit costs no network hop. Each replica
has its own entries; a router that sends the same prompt to the same replica (prefix-aware routing does) makes their
hit rates add up.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from vif.runtime.serving.context import RequestContext

FRESH_KEYS = ("id", "created")  # a hit gets its own
ENTRY_BYTES = 512  # what an entry costs beside its answer (key, bookkeeping), counted against max_bytes
_TENANT_KEY = os.urandom(32)  # tenants are told apart by an HMAC of their API key: the cache never holds a key


@dataclass(frozen=True)
class CacheSettings:
    """Bounds of the cache; `max_entries` 0 turns it off."""

    max_entries: int = 0
    max_bytes: int = 64 << 20  # the stored answers together, ENTRY_BYTES each included
    ttl_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.max_entries < 0 or self.max_bytes < 1 or self.ttl_seconds <= 0:
            raise ValueError(
                "the response cache needs entries >= 0 (0: off), bytes >= 1 and a time to live > 0 seconds"
            )

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0


@dataclass(frozen=True)
class Directives:
    """What the request's `Cache-Control` allows: `no-cache` and `max-age=0` skip the lookup (the fresh answer is
    stored), `no-store` skips both."""

    read: bool = True
    write: bool = True

    @classmethod
    def parse(cls, header: bytes | None) -> Directives:
        tokens = {t.strip().lower().replace(b" ", b"") for t in (header or b"").split(b",")}
        if b"no-store" in tokens:
            return cls(read=False, write=False)
        return cls(read=not tokens & {b"no-cache", b"max-age=0"})


@dataclass(frozen=True)
class StoredAnswer:
    """An answer without the keys a hit renews (`rest`: its JSON object without them), and which of them it had."""

    rest: bytes
    fresh_keys: tuple[str, ...]

    @classmethod
    def of(cls, response: dict[str, Any]) -> StoredAnswer:
        rest = orjson.dumps({k: v for k, v in response.items() if k not in FRESH_KEYS})
        return cls(rest, tuple(k for k in FRESH_KEYS if k in response))

    def renewed(self, ctx: RequestContext[Any]) -> bytes:
        """The answer to `ctx`: its own `id` and `created` spliced in, the rest as stored (not parsed again)."""
        fresh = {"id": ctx.request_id, "created": ctx.created}
        if not self.fresh_keys:
            return self.rest
        head = orjson.dumps({k: fresh[k] for k in self.fresh_keys})
        return head if self.rest == b"{}" else head[:-1] + b"," + self.rest[1:]

    @property
    def size(self) -> int:
        return len(self.rest) + ENTRY_BYTES


class ResponseCache:
    """Answers by key, least recently used first out, each dropped once older than the time to live: when it is
    looked up, or when it reaches the least recently used end."""

    def __init__(self, settings: CacheSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._entries: OrderedDict[bytes, tuple[float, StoredAnswer]] = OrderedDict()  # key -> (stored at, answer)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> StoredAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._expired(entry[0]):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: bytes, answer: StoredAnswer) -> None:
        if answer.size > self.settings.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self.clock(), answer)
        self.bytes += answer.size
        self._trim()

    def reconfigure(self, settings: CacheSettings) -> None:
        """New bounds, live (docs/live-config.md): entries beyond them go now, least recently used first; all of
        them when the cache is turned off."""
        self.settings = settings
        self._trim()

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def _trim(self) -> None:
        while self._entries:
            oldest, (stored, _) = next(iter(self._entries.items()))
            full = len(self._entries) > self.settings.max_entries or self.bytes > self.settings.max_bytes
            if not (full or self._expired(stored)):
                break
            self._drop(oldest)

    def _expired(self, stored: float) -> bool:
        return self.clock() - stored > self.settings.ttl_seconds

    def _drop(self, key: bytes) -> None:
        _, answer = self._entries.pop(key)
        self.bytes -= answer.size


def cache_key(protocol: str, ctx: RequestContext[Any], authorization: bytes | None) -> bytes | None:
    """The request's key, or None when its answer may differ from one run to the next (or it streams). Built on
    the worker thread that prepared the request: dumping and hashing a large one takes milliseconds."""
    if ctx.stream or not all(o.temperature == 0 or o.seed is not None for o in ctx.options):
        return None
    tenant = hmac.new(_TENANT_KEY, authorization or b"", hashlib.sha256).digest()
    engine_sees = [
        protocol,
        ctx.model,
        [p.token_ids for p in ctx.prompts],
        [asdict(o) for o in ctx.options],
        ctx.request.model_dump(mode="json"),
    ]
    return tenant + hashlib.sha256(orjson.dumps(engine_sees, option=orjson.OPT_SORT_KEYS)).digest()
