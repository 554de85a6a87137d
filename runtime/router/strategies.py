"""How a request picks a replica: pure functions of the routing key and the candidates' loads.

- `prefix-hash`: consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with
  Bounded Loads", 2016), bounded twice. Keys: a key lives on the first replica of its ring walk (a ring of
  virtual nodes) that holds fewer than its share of the recently active keys, and stays there (`key_table.py`),
  so requests sharing a prefix meet the KV cache that prefix left behind and a few prefixes still split evenly.
  Requests: the key's replica is passed over while taking the request would put it above
  `ceil(c * (in flight + 1) / candidates)`, and the next distinct replica on the ring is tried. With c >= 1 some
  candidate is always within the bound. Adding or removing a replica moves about the keys it takes or had.
- `kv-aware`: prefix-hash's choice, unless the engines' own KV events (`kv_index.py`) show another candidate
  within the same load bound holding a longer cached prefix of the prompt's tokens; then that one. Without the
  prompt's tokens, or events, it is prefix-hash.
- `least-load`: the fewest requests in flight (this router's own counts); ties rotate.
- `round-robin`: the baseline a plain Service gives.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Protocol

from vif.runtime.router.key_table import MAX_KEYS, KeyTable
from vif.runtime.router.kv_index import KvIndex

VIRTUAL_NODES = 160  # points per replica: with a handful of replicas each owns a share within a few percent
# c of the request bound. 1.25 (KubeAI's default) sent 8-12 of the 83 requests of each round of `make
# bench-routing` past a replica's bound, each putting its prefix into the other replica's cache; 1.5 sent 2.
DEFAULT_LOAD_FACTOR = 1.5


class Load(Protocol):
    """What a strategy needs to know of a candidate: `Endpoint` is one."""

    @property
    def url(self) -> str: ...

    @property
    def in_flight(self) -> int: ...


@dataclass(frozen=True)
class Choice:
    """The replica a strategy chose and why (`first` on the key's own replica, `overflow` past the load bound,
    `no-key` when the request had nothing to hash, `cached` where the KV events put a longer cached prefix,
    `chosen` for the strategies without a key)."""

    url: str
    outcome: str


class Strategy(ABC):
    """Picks one of a non-empty list of candidates (the ready replicas not yet tried for this request), by the
    request's routing key (`prefix.py`) and, for `kv-aware`, its prompt's token ids."""

    name: ClassVar[str]

    @abstractmethod
    def choose(self, candidates: Sequence[Load], key: str | None, tokens: Sequence[int] | None = None) -> Choice: ...


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


class HashRing:
    """`VIRTUAL_NODES` points per URL on a 64-bit circle."""

    def __init__(self, urls: Sequence[str], virtual_nodes: int = VIRTUAL_NODES) -> None:
        points = sorted((hash64(f"{url}#{i}"), url) for url in urls for i in range(virtual_nodes))
        self._hashes = [h for h, _ in points]
        self._urls = [u for _, u in points]
        self._distinct = len(set(urls))

    def walk(self, key: str) -> Iterator[str]:
        """Every URL once, in ring order from the key's position: its owner first, then the fallbacks."""
        if not self._urls:
            return
        start = bisect.bisect(self._hashes, hash64(key))
        seen: set[str] = set()
        for i in range(len(self._urls)):
            url = self._urls[(start + i) % len(self._urls)]
            if url not in seen:
                seen.add(url)
                yield url
                if len(seen) == self._distinct:
                    return


@lru_cache(maxsize=32)
def ring_of(urls: tuple[str, ...]) -> HashRing:
    """Rings are rebuilt only when the candidates change (a replica ejected, restored, added or removed)."""
    return HashRing(urls)


def load_bound(candidates: Sequence[Load], factor: float) -> int:
    """The most requests one candidate may hold once this request is placed."""
    total = sum(c.in_flight for c in candidates) + 1
    return math.ceil(factor * total / len(candidates))


class LeastLoad(Strategy):
    name = "least-load"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, candidates: Sequence[Load], key: str | None, tokens: Sequence[int] | None = None) -> Choice:
        return Choice(self.least_loaded(candidates).url, "chosen")

    def least_loaded(self, candidates: Sequence[Load]) -> Load:
        """The minimum in flight; among equals, a rotating one, so an idle fleet still shares the work."""
        low = min(c.in_flight for c in candidates)
        tied = [c for c in candidates if c.in_flight == low]
        return tied[next(self._turn) % len(tied)]


class RoundRobin(Strategy):
    name = "round-robin"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, candidates: Sequence[Load], key: str | None, tokens: Sequence[int] | None = None) -> Choice:
        return Choice(candidates[next(self._turn) % len(candidates)].url, "chosen")


class PrefixHash(Strategy):
    name = "prefix-hash"

    def __init__(self, load_factor: float = DEFAULT_LOAD_FACTOR, keys: KeyTable | None = None) -> None:
        if load_factor < 1:
            raise ValueError(f"the load bound factor must be at least 1, got {load_factor}")
        self.load_factor = load_factor
        self.keys = KeyTable() if keys is None else keys
        self._no_key = LeastLoad()

    def choose(self, candidates: Sequence[Load], key: str | None, tokens: Sequence[int] | None = None) -> Choice:
        if key is None:
            return Choice(self._no_key.least_loaded(candidates).url, "no-key")
        by_url = {c.url: c for c in candidates}
        ring = ring_of(tuple(sorted(by_url)))
        home = self.keys.home(hash64(key), set(by_url), lambda: ring.walk(key))
        bound = load_bound(candidates, self.load_factor)
        if by_url[home].in_flight + 1 <= bound:
            return Choice(home, "first")
        for url in ring.walk(key):
            if by_url[url].in_flight + 1 <= bound:
                return Choice(url, "overflow")
        return Choice(self._no_key.least_loaded(candidates).url, "overflow")  # not reached: factor >= 1


class KvAware(Strategy):
    """Goes where prefix-hash goes unless another candidate holds more of the prompt: prefix-hash keeps new
    prefixes on a home of their own (the index learns of a prompt's blocks only once its prefill is done), and
    the index follows what the engines really kept, evictions included."""

    name = "kv-aware"

    def __init__(self, index: KvIndex, fallback: PrefixHash) -> None:
        self.index = index
        self.fallback = fallback

    def choose(self, candidates: Sequence[Load], key: str | None, tokens: Sequence[int] | None = None) -> Choice:
        choice = self.fallback.choose(candidates, key)
        if not tokens:
            return choice
        bound = load_bound(candidates, self.fallback.load_factor)
        within = [c for c in candidates if c.in_flight + 1 <= bound]
        if not within:
            return choice
        cached = self.index.cached_blocks([c.url for c in within], tokens)
        best = max(within, key=lambda c: (cached[c.url], -c.in_flight))
        if cached[best.url] > cached.get(choice.url, 0):
            return Choice(best.url, "cached")
        return choice


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (PrefixHash, KvAware, LeastLoad, RoundRobin)}


def build_strategy(
    name: str, load_factor: float = DEFAULT_LOAD_FACTOR, max_keys: int = MAX_KEYS, index: KvIndex | None = None
) -> Strategy:
    """`index`: what the replicas' KV events say they hold; `kv-aware` needs it."""
    if name == PrefixHash.name:
        return PrefixHash(load_factor, KeyTable(max_keys=max_keys))
    if name == KvAware.name:
        if index is None:
            raise ValueError("kv-aware routing needs the replicas' KV events")
        return KvAware(index, PrefixHash(load_factor, KeyTable(max_keys=max_keys)))
    return STRATEGIES[name]()
