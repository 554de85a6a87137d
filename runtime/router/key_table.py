"""Which replica each recently active routing key lives on, so that keys, not only requests, stay balanced.

A ring alone places a handful of keys unevenly (8 prefixes on 2 replicas split 5:3 or worse three times in four),
and the replica with more prefixes than its KV cache holds keeps evicting them. This table is the "balls" side of
consistent hashing with bounded loads (Mirrokni et al.), with routing keys as the balls: a key stays on the
replica it was placed on while that replica holds at most `ceil(keys / replicas)` of them; a new key, or one whose
replica is gone or over that share, is placed on the first replica of its ring walk that is under it. A key that
goes unused for `idle_seconds` leaves the table (its prefix is likely evicted by then anyway), and so does the
oldest one past `max_keys`. Keys are stored as 64-bit hashes.

A key counts towards its replica's share from its second request on: a prompt seen once has no prefix worth
keeping yet, and a router's traffic is full of them (a warm-up request left as the ninth key split eight shared
prefixes 5:3 in half of the trials). Placed like the others, a new key may still move once, at its second request.
"""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from typing import NamedTuple

KEY_IDLE_SECONDS = 300.0
MAX_KEYS = 100_000


class Home(NamedTuple):
    """Where a key lives, when it was last used, and whether it counts towards its replica's share yet."""

    url: str
    seen: float
    counted: bool


class KeyTable:
    def __init__(
        self,
        idle_seconds: float = KEY_IDLE_SECONDS,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._homes: OrderedDict[int, Home] = OrderedDict()  # least recently used first
        self._counts: Counter[str] = Counter()  # keys counted (used again) per replica
        self._counted = 0

    def __len__(self) -> int:
        return len(self._homes)

    def count(self, url: str) -> int:
        """Active keys placed on `url` that have been used more than once."""
        return self._counts[url]

    def home(self, key: int, candidates: set[str], walk: Callable[[], Iterable[str]]) -> str:
        """The replica `key` lives on among `candidates`, placing it (again) first if it has none there or its
        replica holds more than its share. `walk` gives the candidates in the key's ring order."""
        now = self._clock()
        self._expire(now)
        placed = self._homes.pop(key, None)
        if placed is not None:
            self._uncount(placed)
        share = math.ceil((self._counted + 1) / len(candidates))
        if placed is not None and placed.url in candidates and self._counts[placed.url] < share:
            url = placed.url
        else:
            # Some candidate is under the share: the candidates hold at most the other self._counted keys.
            url = next(u for u in walk() if self._counts[u] < share)
        counted = placed is not None
        self._homes[key] = Home(url, now, counted)
        if counted:
            self._counts[url] += 1
            self._counted += 1
        return url

    def _uncount(self, placed: Home) -> None:
        if placed.counted:
            self._counts[placed.url] -= 1
            self._counted -= 1

    def _expire(self, now: float) -> None:
        while self._homes:
            key, placed = next(iter(self._homes.items()))
            if placed.seen > now - self.idle_seconds and len(self._homes) < self.max_keys:
                return
            del self._homes[key]
            self._uncount(placed)
