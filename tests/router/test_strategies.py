"""The strategies' properties, pinned on plain data: no server, no event loop."""

from __future__ import annotations

import math
import random
import sys
from collections import Counter
from dataclasses import dataclass

import pytest

from vif.runtime.router.key_table import KeyTable
from vif.runtime.router.kv_index import KvIndex
from vif.runtime.router.strategies import (
    Choice,
    HashRing,
    KvAware,
    LeastLoad,
    PrefixHash,
    RoundRobin,
    build_strategy,
    hash64,
    load_bound,
)

KEYS = [f"system:you are agent {i}\x1euser:question {i * 7919}" for i in range(4000)]


@dataclass
class Replica:
    url: str
    in_flight: int = 0


def replicas(n: int) -> list[Replica]:
    return [Replica(f"http://10.0.0.{i}:8000") for i in range(1, n + 1)]


def owners(candidates: list[Replica], keys: list[str] = KEYS, strategy: PrefixHash | None = None) -> dict[str, str]:
    """Where each key goes, asked in turn of `strategy` (a fresh one unless given: one router across a change), each
    key twice, since a key counts towards a replica's share from its second request on."""
    strategy = strategy or PrefixHash()
    for key in keys:
        strategy.choose(candidates, key)
    return {key: strategy.choose(candidates, key).url for key in keys}


def test_same_key_same_replica() -> None:
    fleet = replicas(4)
    strategy = PrefixHash()
    for key in KEYS[:50]:
        assert len({strategy.choose(fleet, key).url for _ in range(5)}) == 1
        assert strategy.choose(fleet, key).outcome == "first"


def test_keys_spread_evenly_over_replicas() -> None:
    shares = Counter(owners(replicas(4)).values())
    assert sorted(shares.values()) == [1000] * 4


def test_a_few_keys_split_evenly_whatever_the_ring() -> None:
    """Eight prefixes on two replicas: a ring alone splits them 5:3 or worse three times in four."""
    rng = random.Random(3)
    for _ in range(100):
        fleet = [Replica(f"http://127.0.0.1:{rng.randrange(1024, 65536)}") for _ in range(2)]
        keys = [f"prefix {rng.random()}" for _ in range(8)]
        assert sorted(Counter(owners(fleet, keys).values()).values()) == [4, 4]
    ring_splits = Counter(
        max(Counter(next(HashRing([f"r{t}a", f"r{t}b"]).walk(f"{t}/{k}")) for k in range(8)).values())
        for t in range(200)
    )
    assert ring_splits[4] < 100  # what the table is for


def test_a_key_stays_where_it_was_placed_not_where_the_ring_says() -> None:
    """Four keys the ring gives to one replica: two are placed on the other, and stay there."""
    fleet = replicas(2)
    ring = HashRing([r.url for r in fleet])
    keys = [key for key in KEYS if next(ring.walk(key)) == fleet[0].url][:4]
    strategy = PrefixHash()
    placed = owners(fleet, keys, strategy)
    assert Counter(placed.values()) == {fleet[0].url: 2, fleet[1].url: 2}
    assert owners(fleet, keys * 3, strategy) == placed


def test_adding_a_replica_moves_only_keys_to_it() -> None:
    strategy = PrefixHash()
    before = owners(replicas(5), strategy=strategy)
    after = owners(replicas(6), strategy=strategy)
    moved = [key for key in KEYS if before[key] != after[key]]
    assert {after[key] for key in moved} == {"http://10.0.0.6:8000"}
    assert 0.15 < len(moved) / len(KEYS) < 0.18  # its share, 1/6
    assert owners(replicas(6), strategy=strategy) == after  # and they stay


def test_removing_a_replica_moves_only_its_keys() -> None:
    fleet = replicas(5)
    strategy = PrefixHash()
    before = owners(fleet, strategy=strategy)
    gone = fleet.pop(2).url
    after = owners(fleet, strategy=strategy)
    moved = [key for key in KEYS if before[key] != after[key]]
    assert {before[key] for key in moved} == {gone}
    assert len(moved) == Counter(before.values())[gone]
    assert sorted(Counter(after.values()).values()) == [1000] * 4


def test_an_ejected_replicas_keys_go_elsewhere_and_it_takes_its_share_back() -> None:
    """Candidates are the ready replicas: while one is left out only its keys move; when it is back it takes its
    share of keys again, and only keys that go to it move."""
    fleet = replicas(4)
    strategy = PrefixHash()
    before = owners(fleet, strategy=strategy)
    ejected = fleet[1].url
    during = owners([r for r in fleet if r.url != ejected], strategy=strategy)
    assert {before[key] for key in KEYS if during[key] != before[key]} == {ejected}
    assert ejected not in during.values()
    after = owners(fleet, strategy=strategy)
    assert {after[key] for key in KEYS if after[key] != during[key]} == {ejected}
    assert Counter(after.values())[ejected] == 1000


def table_bytes(table: KeyTable) -> int:
    """What the table holds, deeply: its two maps, each key and each placement (the URL strings are the replicas')."""
    homes, counts = table._homes, table._counts
    entries = sum(sys.getsizeof(key) + sys.getsizeof(home) + sys.getsizeof(home.seen) for key, home in homes.items())
    return sys.getsizeof(homes) + entries + sys.getsizeof(counts)


def test_a_million_distinct_prompts_leave_the_table_at_its_bound() -> None:
    """--max-keys bounds the router's memory for routing keys whatever the traffic: through a million prompts, none
    seen twice, the table keeps its number of keys and stays within 1.5x its size when it first filled (the map's
    own table grows once under churn, then stays: 1.21x, measured)."""
    table = KeyTable(max_keys=10_000)
    urls = {r.url for r in replicas(2)}
    ordered = sorted(urls)
    sizes = []
    for i in range(1_000_000):
        table.home(hash64(f"user:question {i}"), urls, lambda: iter(ordered))
        if i % 10_000 == 0:
            sizes.append(table_bytes(table))
            assert len(table) <= 10_000
    assert len(table) == 10_000
    assert max(sizes) <= 1.5 * sizes[1], (max(sizes), sizes[1])
    assert sizes[-1] < 400 * table.max_keys  # bytes a key, whatever the traffic


def test_idle_keys_leave_the_table() -> None:
    now = [0.0]
    table = KeyTable(idle_seconds=60, max_keys=3, clock=lambda: now[0])
    strategy = PrefixHash(keys=table)
    fleet = replicas(2)
    owners(fleet, KEYS[:2], strategy)
    assert len(table) == 2
    assert sum(table.count(r.url) for r in fleet) == 2
    now[0] = 61.0
    owners(fleet, KEYS[2:3], strategy)
    assert len(table) == 1 and sum(table.count(r.url) for r in fleet) == 1
    owners(fleet, KEYS[3:8], strategy)
    assert len(table) == 3  # the oldest leave past max_keys


def test_a_key_seen_once_takes_no_share() -> None:
    """A one-off prompt (here a warm-up request) does not count, so the shared prefixes after it still split 4:4;
    counted from its first request, it left them 5:3 in about half of these trials."""
    rng = random.Random(5)
    for _ in range(100):
        fleet = [Replica(f"http://127.0.0.1:{rng.randrange(1024, 65536)}") for _ in range(2)]
        strategy = PrefixHash()
        strategy.choose(fleet, "warm-up")
        keys = [f"prefix {rng.random()}" for _ in range(8)]
        assert sorted(Counter(owners(fleet, keys, strategy).values()).values()) == [4, 4]
        assert sum(strategy.keys.count(r.url) for r in fleet) == 8


@pytest.mark.parametrize("factor", [1.0, 1.25, 2.0])
def test_hot_key_never_pushes_a_replica_past_the_bound(factor: float) -> None:
    """Every request on one key, none finishing: the owner fills to the bound, then the others take turns."""
    fleet = replicas(4)
    strategy = PrefixHash(factor)
    for _ in range(200):
        bound = load_bound(fleet, factor)
        choice = strategy.choose(fleet, "the hot prefix")
        chosen = next(r for r in fleet if r.url == choice.url)
        chosen.in_flight += 1
        assert chosen.in_flight <= bound
    total = sum(r.in_flight for r in fleet)
    assert max(r.in_flight for r in fleet) <= math.ceil(factor * total / len(fleet))


def test_owner_is_passed_over_only_when_above_the_bound() -> None:
    fleet = replicas(3)
    strategy = PrefixHash(1.25)
    owner = strategy.choose(fleet, "k").url
    by_url = {r.url: r for r in fleet}
    by_url[owner].in_flight = 4  # others idle: bound = ceil(1.25 * 5 / 3) = 3
    choice = strategy.choose(fleet, "k")
    assert choice.url != owner and choice.outcome == "overflow"
    assert choice.url == next(u for u in HashRing(list(by_url)).walk("k") if u != owner)
    by_url[owner].in_flight = 2  # bound = ceil(1.25 * 3 / 3) = 2, and 2 + 1 > 2
    assert strategy.choose(fleet, "k").url != owner
    by_url[owner].in_flight = 1  # bound = ceil(1.25 * 2 / 3) = 1, and 1 + 1 > 1: at low load the bound is tight
    assert strategy.choose(fleet, "k").url != owner
    by_url[owner].in_flight = 0
    assert strategy.choose(fleet, "k").url == owner


def test_random_load_keeps_every_choice_within_the_bound() -> None:
    rng = random.Random(7)
    fleet = replicas(5)
    strategy = PrefixHash(1.25)
    for _ in range(2000):
        if rng.random() < 0.45:
            busy = [r for r in fleet if r.in_flight]
            if busy:
                rng.choice(busy).in_flight -= 1
            continue
        bound = load_bound(fleet, 1.25)
        choice = strategy.choose(fleet, rng.choice(KEYS[:20]))
        chosen = next(r for r in fleet if r.url == choice.url)
        chosen.in_flight += 1
        assert chosen.in_flight <= bound


def test_no_key_goes_by_load() -> None:
    fleet = replicas(3)
    fleet[0].in_flight, fleet[1].in_flight, fleet[2].in_flight = 3, 1, 2
    assert PrefixHash().choose(fleet, None).url == fleet[1].url
    assert PrefixHash().choose(fleet, None).outcome == "no-key"


def test_factor_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PrefixHash(0.9)


def test_least_load_picks_the_minimum() -> None:
    fleet = replicas(4)
    for r, load in zip(fleet, [5, 2, 7, 3], strict=True):
        r.in_flight = load
    assert {LeastLoad().choose(fleet, "any").url for _ in range(10)} == {fleet[1].url}


def test_least_load_rotates_among_equals() -> None:
    fleet = replicas(3)
    strategy = LeastLoad()
    assert {strategy.choose(fleet, None).url for _ in range(3)} == {r.url for r in fleet}


def test_round_robin_is_even() -> None:
    fleet = replicas(3)
    strategy = RoundRobin()
    fleet[0].in_flight = 100  # load is not its business
    counts = Counter(strategy.choose(fleet, "same key").url for _ in range(300))
    assert set(counts.values()) == {100}


def test_ring_walk_visits_every_replica_once() -> None:
    urls = [r.url for r in replicas(6)]
    for key in KEYS[:100]:
        walk = list(HashRing(urls).walk(key))
        assert sorted(walk) == sorted(urls)


def test_build_strategy_by_name() -> None:
    prefix_hash = build_strategy("prefix-hash", 1.5)
    assert isinstance(prefix_hash, PrefixHash) and prefix_hash.load_factor == 1.5
    assert isinstance(build_strategy("least-load"), LeastLoad)
    assert isinstance(build_strategy("round-robin"), RoundRobin)


def kv_aware_with(held: dict[str, int], tokens: list[int]) -> tuple[KvAware, KvIndex]:
    """A kv-aware strategy whose index says each replica holds the first `held[url]` blocks of `tokens` (4-token
    blocks)."""
    index = KvIndex()
    for url, blocks in held.items():
        event = {"type": "BlockStored", "parent_block_hash": None, "block_size": 4}
        index.apply(url, [{**event, "block_hashes": list(range(blocks)), "token_ids": tokens[: 4 * blocks]}])
    return KvAware(index, PrefixHash()), index


def test_kv_aware_follows_the_longest_cached_prefix() -> None:
    fleet, tokens = replicas(3), list(range(40))
    home = PrefixHash().choose(fleet, "a prompt").url
    elsewhere = next(r.url for r in fleet if r.url != home)
    strategy, _ = kv_aware_with({home: 2, elsewhere: 5}, tokens)
    assert strategy.choose(fleet, "a prompt", tokens) == Choice(elsewhere, "cached")


def test_kv_aware_stays_home_unless_another_holds_more() -> None:
    fleet, tokens = replicas(3), list(range(40))
    home = PrefixHash().choose(fleet, "a prompt").url
    for held in ({}, {home: 3}, {r.url: 3 for r in fleet}):
        strategy, _ = kv_aware_with(held, tokens)
        assert strategy.choose(fleet, "a prompt", tokens) == Choice(home, "first"), held
        assert strategy.choose(fleet, "a prompt", None) == Choice(home, "first")  # tokens unknown: prefix-hash


def test_kv_aware_keeps_the_load_bound() -> None:
    fleet, tokens = replicas(2), list(range(40))
    home = PrefixHash().choose(fleet, "a prompt").url
    busy = next(r for r in fleet if r.url != home)
    busy.in_flight = 4  # bound: ceil(1.5 * 5 / 2) = 4, so it cannot take a fifth
    strategy, _ = kv_aware_with({busy.url: 8}, tokens)
    assert strategy.choose(fleet, "a prompt", tokens).url == home


def test_kv_aware_needs_the_index() -> None:
    with pytest.raises(ValueError, match="KV events"):
        build_strategy("kv-aware")
    assert isinstance(build_strategy("kv-aware", index=KvIndex()), KvAware)
