"""The strategies' properties, pinned on plain data: no server, no event loop."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from vif.runtime.router.strategies import HashRing, LeastLoad, PrefixHash, RoundRobin, build_strategy, load_bound

KEYS = [f"system:you are agent {i}\x1euser:question {i * 7919}" for i in range(4000)]


@dataclass
class Replica:
    url: str
    in_flight: int = 0


def replicas(n: int) -> list[Replica]:
    return [Replica(f"http://10.0.0.{i}:8000") for i in range(1, n + 1)]


def owners(candidates: list[Replica], keys: list[str] = KEYS) -> dict[str, str]:
    strategy = PrefixHash()
    return {key: strategy.choose(candidates, key).url for key in keys}


def test_same_key_same_replica() -> None:
    fleet = replicas(4)
    strategy = PrefixHash()
    for key in KEYS[:50]:
        assert len({strategy.choose(fleet, key).url for _ in range(5)}) == 1
        assert strategy.choose(fleet, key).outcome == "first"


def test_keys_spread_over_replicas() -> None:
    shares = Counter(owners(replicas(4)).values())
    assert len(shares) == 4
    assert all(0.15 < count / len(KEYS) < 0.35 for count in shares.values()), shares


def test_adding_a_replica_moves_only_keys_to_it() -> None:
    before = owners(replicas(5))
    after = owners(replicas(6))
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == "http://10.0.0.6:8000" for key in moved)
    assert 0.10 < len(moved) / len(KEYS) < 0.25  # about 1/6


def test_removing_a_replica_moves_only_its_keys() -> None:
    fleet = replicas(5)
    before = owners(fleet)
    gone = fleet.pop(2).url
    after = owners(fleet)
    moved = [key for key in KEYS if before[key] != after[key]]
    assert {before[key] for key in moved} == {gone}
    assert all(after[key] != gone for key in KEYS)
    assert 0.12 < len(moved) / len(KEYS) < 0.30  # about 1/5


def test_ejected_replica_is_skipped_and_its_keys_fall_to_the_next_on_the_ring() -> None:
    """Candidates are the ready replicas: leaving one out sends its keys to the next replica on its ring walk."""
    fleet = replicas(4)
    before = owners(fleet)
    ejected = fleet[1].url
    after = owners([r for r in fleet if r.url != ejected])
    ring = HashRing([r.url for r in fleet])
    for key in KEYS:
        walk = list(ring.walk(key))
        assert after[key] == next(url for url in walk if url != ejected)
        if before[key] != ejected:
            assert after[key] == before[key]


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
