"""A replica that fails once it was picked: a stream that breaks or goes silent after it started (never retried; it
ends with an error event), a replica that takes the connection and never answers (retried elsewhere), and the
watch that times the silence."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import httpx
import orjson
from aiohttp.client_proto import ResponseHandler

from tests.router.conftest import WAIT, FakeReplica, StartReplica, StartRouter, listening_socket, wait_until
from vif.runtime.router.proxy import ReplicaSilent, SilenceWatch

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hello"}]}


async def stream_through(url: str) -> tuple[bytes, str]:
    """One streamed chat through the router (its status 200: the replica had started it), and the metrics after."""
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            assert response.status_code == 200
            received = await response.aread()
        metrics = (await client.get("/metrics")).text
    return received, metrics


def last_event_error(stream: bytes) -> object:
    events = [e for e in stream.split(b"\n\n") if e.strip()]
    return orjson.loads(events[-1].removeprefix(b"data: "))["error"]


def silent_replica() -> tuple[socket.socket, str]:
    """What a frozen replica looks like from outside (SIGSTOP, a wedged node): the kernel completes the
    handshake and takes the request into its buffers, and nothing ever answers."""
    sock = listening_socket()
    sock.listen(64)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_no_retry_once_the_stream_started(start_replica: StartReplica, start_router: StartRouter) -> None:
    """The replica breaks after its first event: the client's stream ends with an error event after what it
    had, and the other replica sees nothing."""
    started = [await start_replica(name, events=asyncio.Queue()) for name in "ab"]
    url, router = await start_router([served.url for _, served in started], strategy="round-robin", cooldown=60)
    first_url = router.endpoints.members[0].url  # round robin's first turn
    breaking = next(replica for replica, served in started if served.url == first_url)
    other = next(replica for replica, _ in started if replica is not breaking)
    assert breaking.events is not None
    breaking.events.put_nowait(b"data: 1\n\n")
    breaking.events.put_nowait(FakeReplica.BREAK)
    received, metrics = await stream_through(url)
    assert received.startswith(b"data: 1\n\n")
    assert last_event_error(received) == {
        "message": "The replica broke the stream.", "type": "service_unavailable", "code": "replica_stalled"
    }  # fmt: skip
    assert other.seen == []
    assert "vif_router_retries_total{" not in metrics
    assert f'vif_router_ejections_total{{endpoint="{first_url}",reason="broken-stream"}} 1.0' in metrics


async def test_no_status_line_in_time_is_retried_on_another_replica(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    sock, frozen = silent_replica()
    with sock:
        replica, served = await start_replica("b")
        url, _ = await start_router([frozen, served.url], strategy="round-robin", first_byte_timeout=0.3)
        async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
            answers = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
            metrics = (await client.get("/metrics")).text
    assert [(a.status_code, a.headers["x-replica"]) for a in answers] == [(200, "b")] * 3
    assert len(replica.seen) == 3
    assert 'vif_router_retries_total{reason="first-byte-timeout"} 1.0' in metrics  # once: then it was ejected
    assert f'vif_router_ejections_total{{endpoint="{frozen}",reason="first-byte-timeout"}} 1.0' in metrics


async def test_every_replica_silent_is_a_502(start_router: StartRouter) -> None:
    silent = [silent_replica() for _ in range(2)]
    try:
        url, _ = await start_router([u for _, u in silent], first_byte_timeout=0.2, retries=1, cooldown=60, max_wait=0)
        async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    finally:
        for sock, _ in silent:
            sock.close()
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "replica_unreachable"


async def test_a_stream_gone_silent_ends_with_an_error_event(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    """After its first event the replica says nothing more: the router closes its side (so the runtime aborts
    the request) and ends the client's stream with an error, instead of holding it open for ever."""
    replica, served = await start_replica("a", events=asyncio.Queue())
    assert replica.events is not None
    replica.events.put_nowait(b"data: 1\n\n")
    url, _ = await start_router([served.url], idle_timeout=0.3, cooldown=60)
    received, metrics = await stream_through(url)
    assert received.startswith(b"data: 1\n\n")
    assert last_event_error(received) == {
        "message": "The replica sent nothing for 0.3 s.", "type": "service_unavailable", "code": "replica_stalled"
    }  # fmt: skip
    await wait_until(replica.stream_closed.is_set)
    assert f'vif_router_ejections_total{{endpoint="{served.url}",reason="idle-timeout"}} 1.0' in metrics


async def test_the_silence_watch_counts_only_the_wait_for_the_replica() -> None:
    """Time spent handing chunks to a slow client is not the replica's silence; time spent waiting for the next
    chunk is, and ends the body with `ReplicaSilent` (the relay then ejects and reports it, as above)."""
    loop = asyncio.get_running_loop()
    body = aiohttp.StreamReader(ResponseHandler(loop), limit=2**16, loop=loop)
    watch = SilenceWatch(body, 0.05)
    try:
        await asyncio.sleep(0.2)  # four timeouts while the relay was not listening: a slow client
        assert body.exception() is None
        watch.listening = loop.time()
        await asyncio.sleep(0.2)
        assert isinstance(body.exception(), ReplicaSilent)
    finally:
        watch.cancel()
