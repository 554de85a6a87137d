"""`kv-aware` routing's index, fed the KV events a real engine published.

`recorded/kv_events_smollm2.jsonl` holds the ZeroMQ frames (topic, sequence, msgpack batch; base64) that vLLM
0.32 (CPU, SmolLM2-135M-Instruct, 128-token blocks, a KV cache of 200 MB) published for seven chats in turn: six
with a long system prompt each (alpha, beta, gamma, delta, epsilon, zeta; alpha asked twice, which stores nothing
the second time), the later ones evicting the earlier ones' blocks, and last a second turn of zeta's chat, stored
as blocks whose parent is zeta's last block.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
import zmq.asyncio

from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.kv_events import EventSequence, KvEvents, decode_batch, events_address
from vif.runtime.router.kv_index import KvIndex, ReplicaBlocks, chain

RECORDED = Path(__file__).parent / "recorded" / "kv_events_smollm2.jsonl"
REPLICA = "http://127.0.0.1:8000"


def frames() -> list[list[bytes]]:
    return [[base64.b64decode(f) for f in json.loads(line)] for line in RECORDED.read_text().splitlines()]


def batches() -> list[list[dict[str, Any]]]:
    return [[dict(e) for e in decode_batch(f[2])] for f in frames()]


def stored(batch_index: int) -> dict[str, Any]:
    """The one BlockStored event of a recorded batch."""
    return next(e for e in batches()[batch_index] if e["type"] == "BlockStored")


def removed_by_the_end() -> set[int]:
    return {h for batch in batches() for e in batch if e["type"] == "BlockRemoved" for h in e["block_hashes"]}


def replayed(upto: int | None = None, max_blocks: int = 100_000) -> KvIndex:
    index = KvIndex(max_blocks)
    for batch in batches()[:upto]:
        index.apply(REPLICA, batch)
    return index


def test_the_recording_is_what_the_tests_say() -> None:
    recorded = batches()
    assert len(recorded) == 7
    assert [sum(e["type"] == "BlockStored" for e in b) for b in recorded] == [1] * 7
    assert stored(0)["block_size"] == 128 and len(stored(0)["block_hashes"]) == 7
    assert stored(6)["parent_block_hash"] == stored(5)["block_hashes"][-1]


def test_a_stored_prompt_is_held_block_by_block() -> None:
    alpha = stored(0)["token_ids"]
    index = replayed(upto=1)
    assert index.cached_blocks([REPLICA, "http://127.0.0.1:8001"], alpha) == {REPLICA: 7, "http://127.0.0.1:8001": 0}
    assert index.cached_blocks([REPLICA], alpha[: 3 * 128 + 5]) == {REPLICA: 3}  # a prompt sharing three blocks
    assert index.cached_blocks([REPLICA], [7, *alpha[1:]]) == {REPLICA: 0}  # the first token differs: nothing


def test_evicted_blocks_are_no_longer_held() -> None:
    alpha = stored(0)
    gone = removed_by_the_end()
    still_held = next((i for i, h in enumerate(alpha["block_hashes"]) if h in gone), len(alpha["block_hashes"]))
    assert still_held < 7, "the recording evicts some of alpha's blocks"
    assert replayed().cached_blocks([REPLICA], alpha["token_ids"]) == {REPLICA: still_held}


def test_a_later_turn_chains_onto_the_blocks_before_it() -> None:
    zeta, second_turn = stored(5), stored(6)
    tokens = zeta["token_ids"] + second_turn["token_ids"]
    assert replayed().cached_blocks([REPLICA], tokens) == {REPLICA: 9 + 3}


def test_blocks_whose_parent_is_unknown_are_skipped() -> None:
    """The zeta batch lost: its second turn cannot be placed in a chain, so it is not indexed at all."""
    index = KvIndex()
    for position, batch in enumerate(batches()):
        if position != 5:
            index.apply(REPLICA, batch)
    tokens = stored(5)["token_ids"] + stored(6)["token_ids"]
    assert index.cached_blocks([REPLICA], tokens) == {REPLICA: 0}
    alone = ReplicaBlocks()
    alone.apply([stored(6)])
    assert len(alone) == 0


def test_blocks_of_an_adapter_or_with_extra_keys_are_not_indexed() -> None:
    for extra in ({"lora_name": "sql-lora"}, {"lora_id": 1}, {"extra_keys": [["salt"]] * 7}):
        blocks = ReplicaBlocks()
        blocks.apply([{**stored(0), **extra}])
        assert len(blocks) == 0, extra


def test_all_blocks_cleared_empties_the_replica() -> None:
    index = replayed()
    index.apply(REPLICA, [{"type": "AllBlocksCleared"}])
    assert len(index.replicas[REPLICA]) == 0


def test_a_million_distinct_blocks_leave_the_index_at_its_bound() -> None:
    blocks = ReplicaBlocks(max_blocks=10_000)
    for start in range(0, 1_000_000, 1_000):
        events = [
            {"type": "BlockStored", "block_hashes": [n], "parent_block_hash": None, "token_ids": [n, n], "block_size": 2}
            for n in range(start, start + 1_000)
        ]  # fmt: skip
        blocks.apply(events)
        assert len(blocks) <= 10_000
    assert len(blocks) == 10_000
    assert blocks.leading(chain([999_999, 999_999], 2)) == 1  # the newest stay
    assert blocks.leading(chain([0, 0], 2)) == 0  # the first learned left


def test_the_sequence_notices_a_gap_and_a_restart() -> None:
    sequence = EventSequence()
    assert [sequence.follows(n) for n in (4, 5, 6, 8, 9, 0, 1)] == [True, True, True, False, True, False, True]


@pytest.mark.parametrize(
    ("url", "address"),
    [("http://10.1.2.3:8000", "tcp://10.1.2.3:5557"), ("http://[fd00::7]:8000", "tcp://[fd00::7]:5557")],
)
def test_events_address_is_the_replicas_host(url: str, address: str) -> None:
    assert events_address(url, 5557) == address


def test_events_address_by_offset_for_replicas_sharing_a_host() -> None:
    assert events_address("http://127.0.0.1:8411", 5557, offset=1000) == "tcp://127.0.0.1:9411"


def test_a_batch_that_is_not_a_kv_event_batch_is_refused() -> None:
    for payload in (b"\xc1", msgspec.msgpack.encode({"events": []}), msgspec.msgpack.encode([1.0])):
        with pytest.raises(ValueError):
            decode_batch(payload)


def receiving(index: KvIndex, *, ready: bool = True) -> tuple[KvEvents, EventSequence]:
    return KvEvents(EndpointSet([REPLICA], ready=ready), index), EventSequence()


def test_a_lost_batch_drops_what_the_replica_was_known_to_hold() -> None:
    index = KvIndex()
    events, sequence = receiving(index)
    recorded = frames()
    events.receive(REPLICA, sequence, recorded[0])
    events.receive(REPLICA, sequence, recorded[2])  # batch 1 lost
    alpha, gamma = stored(0)["token_ids"], stored(2)["token_ids"]
    assert index.cached_blocks([REPLICA], alpha) == {REPLICA: 0}
    assert index.cached_blocks([REPLICA], gamma) == {REPLICA: 7}


def test_an_engine_that_starts_again_is_learned_afresh() -> None:
    index = KvIndex()
    events, sequence = receiving(index)
    for recorded in frames()[:3]:
        events.receive(REPLICA, sequence, recorded)
    topic, _, payload = frames()[1]
    events.receive(REPLICA, sequence, [topic, (0).to_bytes(8, "big"), payload])  # a new engine's first batch
    assert index.cached_blocks([REPLICA], stored(0)["token_ids"]) == {REPLICA: 0}
    assert index.cached_blocks([REPLICA], stored(1)["token_ids"]) == {REPLICA: 7}


def test_an_unreadable_batch_drops_the_replica_and_is_survived() -> None:
    index = replayed()
    events, sequence = receiving(index)
    events.receive(REPLICA, sequence, [b"", (1).to_bytes(8, "big"), b"not msgpack \xc1"])
    assert REPLICA not in index.replicas
    events.receive(REPLICA, sequence, frames()[1])
    assert index.cached_blocks([REPLICA], stored(1)["token_ids"]) == {REPLICA: 7}


def test_a_replica_out_of_routing_is_not_indexed() -> None:
    index = KvIndex()
    events, sequence = receiving(index, ready=False)
    events.receive(REPLICA, sequence, frames()[0])
    assert REPLICA not in index.replicas


@pytest.fixture
def publisher() -> Iterator[tuple[zmq.Socket[bytes], int]]:
    """A ZeroMQ PUB socket on a free local port, as the engine binds its own."""
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    yield socket, port
    socket.close(linger=0)
    context.term()


async def test_the_router_subscribes_to_each_replica_and_follows_the_set(
    publisher: tuple[zmq.Socket[bytes], int],
) -> None:
    socket, port = publisher
    replica = "http://127.0.0.1:8000"
    endpoints, index = EndpointSet([replica], ready=True), KvIndex()
    events = KvEvents(endpoints, index, port)
    task = asyncio.create_task(events.run())
    alpha = stored(0)["token_ids"]
    try:
        topic, _, payload = frames()[0]
        # A PUB socket drops what it sends before a subscriber has joined: send until the index has it.
        async with asyncio.timeout(10):
            for sequence in range(1_000_000):
                socket.send_multipart([topic, sequence.to_bytes(8, "big"), payload])
                if index.cached_blocks([replica], alpha)[replica] == 7:
                    break
                await asyncio.sleep(0.02)
        assert events.subscribed == {replica}
        assert index.cached_blocks([replica], alpha) == {replica: 7}
        endpoints.replace([])  # the replica left: its subscription and index go
        async with asyncio.timeout(5):
            while events.subscribed:
                await asyncio.sleep(0.02)
        assert replica not in index.replicas
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
