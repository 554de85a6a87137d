"""The replicas' KV cache events, followed into the router's `KvIndex` (`kv_index.py`).

Each replica's engine publishes them on a ZeroMQ PUB socket (vLLM's `--kv-events-config`, which the operator sets
when a model routes `kv-aware`): three frames, the topic, an 8-byte big-endian sequence number and a msgpack
`KVEventBatch` (`[timestamp, [event, ...], data_parallel_rank]`, each event a map tagged by its `type`). The router
subscribes to every endpoint of its set, on the endpoint's host and the events' port (one port for all, as in pods,
each with an address of its own; or the endpoint's HTTP port plus an offset, for replicas sharing a host), and
follows the set as it changes.

A replica's index is dropped, so its prompts fall back to `prefix-hash` until its events rebuild it, when:
- the sequence skips a number (a batch was lost: the index would keep blocks the engine evicted),
- the sequence starts again (the engine restarted with an empty cache),
- the endpoint is ejected or leaves the set (it may come back as a new engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec
import zmq
import zmq.asyncio

from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.kv_index import KvIndex

log = logging.getLogger(__name__)

DEFAULT_EVENTS_PORT = 5557  # vLLM's default `endpoint` (tcp://*:5557)


def decode_batch(payload: bytes) -> list[Mapping[str, Any]]:
    """The events of one published batch; ValueError if it is not a `KVEventBatch`."""
    try:
        batch = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not msgpack: {exc}") from None
    if not isinstance(batch, list) or len(batch) < 2 or not isinstance(batch[1], list):
        raise ValueError("not a KVEventBatch: expected [timestamp, events, ...]")
    return [event for event in batch[1] if isinstance(event, dict)]


def events_address(url: str, port: int, offset: int | None = None) -> str:
    """The PUB socket of the replica at `url`: its host, and `port`, or its HTTP port plus `offset` if given."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if offset is not None:
        port = (parts.port or (443 if parts.scheme == "https" else 80)) + offset
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


class EventSequence:
    """Whether one replica's batches arrive whole and from the same engine."""

    def __init__(self) -> None:
        self.last: int | None = None

    def follows(self, number: int) -> bool:
        """True if `number` comes right after the last one (or is the first seen); False means start over."""
        last, self.last = self.last, number
        return last is None or number == last + 1


class KvEvents:
    """One subscription per endpoint, started and stopped with the endpoint set; `run` until cancelled."""

    def __init__(
        self, endpoints: EndpointSet, index: KvIndex, port: int = DEFAULT_EVENTS_PORT, offset: int | None = None
    ) -> None:
        self.endpoints = endpoints
        self.index = index
        self.port = port
        self.offset = offset
        self._context = zmq.asyncio.Context()
        self._subscriptions: dict[str, asyncio.Task[None]] = {}

    @property
    def subscribed(self) -> set[str]:
        return set(self._subscriptions)

    async def run(self) -> None:
        try:
            while True:
                self.follow_members()
                await self.endpoints.changed()
        finally:
            for url in list(self._subscriptions):
                await self.unsubscribe(url)
            self._context.term()

    def follow_members(self) -> None:
        """Subscribe to new members; drop the index of members gone or out of routing (they restart cold)."""
        members = {e.url: e for e in self.endpoints.members}
        for url in set(self._subscriptions) - set(members):
            self._drop(url)
        for url, endpoint in members.items():
            if url not in self._subscriptions:
                self._subscriptions[url] = asyncio.create_task(self.subscribe(url), name=f"kv-events {url}")
            if not endpoint.ready:
                self.index.forget(url)

    def _drop(self, url: str) -> asyncio.Task[None]:
        """Stop following `url` and forget what it held; the cancelled subscription, to await if need be."""
        task = self._subscriptions.pop(url)
        task.cancel()
        self.index.forget(url)
        return task

    async def unsubscribe(self, url: str) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._drop(url)

    async def subscribe(self, url: str) -> None:
        socket = self._context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(events_address(url, self.port, self.offset))
        sequence = EventSequence()
        try:
            while True:
                frames = await socket.recv_multipart()
                self.receive(url, sequence, frames)
        finally:
            socket.close()

    def receive(self, url: str, sequence: EventSequence, frames: list[bytes]) -> None:
        if len(frames) != 3 or len(frames[1]) != 8:
            log.warning("replica %s sent a KV event message of %d frames; ignored", url, len(frames))
            return
        number = int.from_bytes(frames[1], "big", signed=True)
        if not sequence.follows(number):
            self.index.forget(url)  # lost batches, or a new engine: rebuilt from what comes next
        try:
            events = decode_batch(frames[2])
        except ValueError as exc:
            log.warning("replica %s sent a KV event batch the router cannot read (%s); its index is dropped", url, exc)
            self.index.forget(url)
            return
        endpoint = self.endpoints.get(url)
        if endpoint is not None and endpoint.ready:
            self.index.apply(url, events, number)
