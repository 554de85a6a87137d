"""What each replica's KV cache holds, learned from the engine's own KV events (`kv_events.py`), and how much of a
prompt each replica already holds.

vLLM publishes a `BlockStored` event when a full block of tokens enters its prefix cache (its block hashes, the
hash of the block before it, and the tokens), `BlockRemoved` when blocks leave it, and `AllBlocksCleared` when
the cache is reset. The router does not reproduce the engine's hash (its algorithm and seed are the engine's
settings): it chains a hash of its own over the same tokens, block by block, and keeps per replica a map from the
engine's hash to its own. A prompt's chain, cut at the same block size, is then looked up block by block: the
number of leading blocks a replica holds is the prefix it would not compute again.

Blocks stored under a LoRA adapter or with extra keys (images, a cache salt) are not indexed: the engine would not
reuse them for a plain prompt of the same tokens. A `BlockStored` whose parent the index does not know (stored
before the router subscribed, or lost) cannot be placed in a chain, and is skipped too; the prompts that need it
fall back to `prefix-hash` (`strategies.py`).

Each replica's map is bounded (`max_blocks`): past it, the blocks learned first are forgotten first.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DEFAULT_MAX_BLOCKS = 262_144  # per replica: a large GPU's cache at 16 tokens a block, about 130 MB of router memory
ROOT = b"\0" * 8


def chain(tokens: Sequence[int], block_size: int, parent: bytes = ROOT) -> list[bytes]:
    """The router's hash of each full block of `tokens`, each one covering every token before it."""
    hashes = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = array("q", tokens[start : start + block_size]).tobytes()
        parent = hashlib.blake2b(parent + block, digest_size=8).digest()
        hashes.append(parent)
    return hashes


class ReplicaBlocks:
    """One replica's cached blocks: the engine's hash of each, mapped to the router's."""

    def __init__(self, max_blocks: int = DEFAULT_MAX_BLOCKS) -> None:
        self.max_blocks = max_blocks
        self.block_size = 0  # learned from the first stored block
        self.sequence = -1  # of the last batch applied (the engine numbers them from 0)
        self._ours: dict[Any, bytes] = {}  # the engine's hash -> ours, oldest first
        self._held: set[bytes] = set()  # ours

    def __len__(self) -> int:
        return len(self._ours)

    def stored(self, event: Mapping[str, Any]) -> None:
        if event.get("lora_name") or event.get("lora_id") or any(event.get("extra_keys") or ()):
            return
        parent_hash = event.get("parent_block_hash")
        parent = ROOT if parent_hash is None else self._ours.get(parent_hash)
        if parent is None:
            return
        self.block_size = int(event["block_size"])
        ours_of = chain(event["token_ids"], self.block_size, parent)
        for theirs, ours in zip(event["block_hashes"], ours_of, strict=False):
            self._ours.pop(theirs, None)
            self._ours[theirs] = ours
            self._held.add(ours)
        while len(self._ours) > self.max_blocks:
            self._held.discard(self._ours.pop(next(iter(self._ours))))

    def removed(self, event: Mapping[str, Any]) -> None:
        for theirs in event["block_hashes"]:
            ours = self._ours.pop(theirs, None)
            if ours is not None:
                self._held.discard(ours)

    def clear(self) -> None:
        self._ours.clear()
        self._held.clear()

    def apply(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            kind = event.get("type")
            if kind == "BlockStored":
                self.stored(event)
            elif kind == "BlockRemoved":
                self.removed(event)
            elif kind == "AllBlocksCleared":
                self.clear()

    def leading(self, hashes: Sequence[bytes]) -> int:
        """How many of a prompt's first blocks this replica holds."""
        for count, block in enumerate(hashes):
            if block not in self._held:
                return count
        return len(hashes)


class KvIndex:
    """Every replica's blocks, by URL. A replica appears once its events arrive and leaves when it is forgotten
    (it left the set, restarted, or its events were lost)."""

    def __init__(self, max_blocks: int = DEFAULT_MAX_BLOCKS) -> None:
        self.max_blocks = max_blocks
        self.replicas: dict[str, ReplicaBlocks] = {}

    def apply(self, url: str, events: Iterable[Mapping[str, Any]], sequence: int = -1) -> None:
        blocks = self.replicas.get(url)
        if blocks is None:
            blocks = self.replicas[url] = ReplicaBlocks(self.max_blocks)
        blocks.apply(events)
        blocks.sequence = sequence

    def forget(self, url: str) -> None:
        self.replicas.pop(url, None)

    def cached_blocks(self, urls: Iterable[str], tokens: Sequence[int]) -> dict[str, int]:
        """Each replica's count of the prompt's leading blocks it holds (0 for a replica the index has not heard
        from)."""
        chains: dict[int, list[bytes]] = {}
        counts = {}
        for url in urls:
            blocks = self.replicas.get(url)
            if blocks is None or not blocks.block_size:
                counts[url] = 0
                continue
            hashes = chains.get(blocks.block_size)
            if hashes is None:
                hashes = chains[blocks.block_size] = chain(tokens, blocks.block_size)
            counts[url] = blocks.leading(hashes)
        return counts
