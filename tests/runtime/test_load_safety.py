"""Load safety: slots counted in sequences and taken after the body, 408 for slow bodies, stalled readers
aborted, oversized prompts refused before tokenising, big bodies prepared off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from helpers.fake_engine import FakeEngine
from vif.runtime.app.body_check import BodyChecker
from vif.runtime.app.factory import ServerSettings
from vif.runtime.app.inference import EventStream, InferenceEndpoint
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.app.limiter import SequenceLimiter
from vif.runtime.asgi import ClientGone, read_body
from vif.runtime.protocols.errors import APIError

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
LONG = {"max_tokens": 20, "ignore_eos": True}


async def started(engine: FakeEngine, count: int = 1) -> None:
    while len(engine.requests) < count:
        await asyncio.sleep(0.002)


async def test_the_limit_counts_sequences_not_requests(make_client, engine: FakeEngine) -> None:
    engine.delay = 0.02
    client = await make_client(ServerSettings(limit_concurrency=4))
    four = asyncio.create_task(client.post("/v1/completions", json={"prompt": ["a", "b"], "n": 2, **LONG}))
    await started(engine, 2)
    refused = await client.post("/v1/chat/completions", json=CHAT)  # one more sequence is one too many
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    assert (await four).status_code == 200
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_one_request_cannot_ask_for_more_than_its_share(make_client) -> None:
    client = await make_client(ServerSettings(limit_concurrency=100, max_sequences_per_request=8))
    r = await client.post("/v1/completions", json={"prompt": ["a", "b", "c"], "n": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    assert "9 sequences" in r.json()["error"]["message"]


async def test_the_default_limit_follows_the_engine(make_client, engine: FakeEngine) -> None:
    engine.delay = 0.02
    client = await make_client()  # FakeEngine's max_num_seqs is 8: the limit is 16, and so at most 16 per request
    r = await client.post("/v1/completions", json={"prompt": ["a"] * 3, "n": 6})
    assert r.status_code == 400 and "at most 16" in r.json()["error"]["message"]
    busy = [asyncio.create_task(client.post("/v1/completions", json={"prompt": ["a"] * 8, **LONG})) for _ in range(2)]
    await started(engine, 16)
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 429
    assert [r.status_code for r in await asyncio.gather(*busy)] == [200, 200]


async def test_a_trickled_body_holds_no_slot_and_times_out(make_client) -> None:
    client = await make_client(ServerSettings(limit_concurrency=1, body_timeout=0.3))
    first_chunk_read = asyncio.Event()

    async def trickle():
        yield b'{"messages": '
        first_chunk_read.set()
        await asyncio.sleep(2)
        yield b"[]}"

    slow = asyncio.create_task(client.post("/v1/chat/completions", content=trickle()))
    await asyncio.wait_for(first_chunk_read.wait(), 10)  # the slow body is being read
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # the slot was free
    r = await slow
    assert r.status_code == 408 and r.json()["error"]["code"] == "request_timeout"


async def test_read_body_gathers_chunks_and_notices_a_disconnect() -> None:
    messages = iter(
        [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.request", "body": b"c"}]
    )
    assert await read_body(lambda: _next(messages), 1) == b"abc"
    gone = iter([{"type": "http.disconnect"}])
    with pytest.raises(ClientGone):
        await read_body(lambda: _next(gone), 1)


async def _next(messages):
    return next(messages)


async def test_a_stream_nobody_reads_is_aborted(engine: FakeEngine) -> None:
    """A client that stops reading blocks `send`; after the send timeout the engine request is aborted."""
    engine.delay = 0.001
    endpoint = InferenceEndpoint("chat", Lifecycle(), SequenceLimiter(8, 8), _metrics(), None, BodyChecker(), 1, 0.2)  # type: ignore[arg-type]
    sent: list[dict] = []
    stuck = asyncio.Event()

    async def send(message: dict) -> None:
        sent.append(message)
        if len(sent) >= 3:
            await stuck.wait()  # the socket's buffer is full and the client reads nothing

    async def receive() -> dict:
        await asyncio.Event().wait()  # the client never disconnects either
        return {}

    async def chunks():
        for i in range(1000):
            await asyncio.sleep(0.001)
            yield {"i": i}

    await asyncio.wait_for(EventStream(endpoint, APIError.body, send, receive).run(chunks()), 5)
    assert sent[0]["status"] == 200 and len(sent) == 3


def _metrics():
    from prometheus_client import CollectorRegistry

    from vif.runtime.serving.metrics import RuntimeMetrics

    return RuntimeMetrics("m", CollectorRegistry())


async def test_text_far_beyond_the_context_is_refused_before_tokenising(make_client, engine: FakeEngine) -> None:
    calls = []
    engine.encode = lambda text: calls.append(text) or [1]  # type: ignore[method-assign]
    client = await make_client()
    r = await client.post("/v1/completions", json={"prompt": "x" * 300})  # 300 chars > 256 tokens at 1 char each
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = await client.post(
        "/generate", json={"prompt": "x", "history_input": ["y" * 150], "history_output": ["z" * 150]}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    assert calls == []


async def test_long_lists_are_refused_before_their_items_are_validated(make_client) -> None:
    client = await make_client()
    r = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}] * 5000})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = await client.post("/generate", json={"prompt": "x", "history_input": ["a"] * 3000, "history_output": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "history_input"
    r = await client.post("/v1/completions", json={"prompt": ["a"] * 100})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


async def test_every_body_is_prepared_off_the_event_loop(make_client, engine: FakeEngine) -> None:
    threads = []
    render = engine.render_chat

    def recording_render(messages, template, tools=None):
        threads.append(threading.current_thread().name)
        return render(messages, template, tools)

    engine.render_chat = recording_render  # type: ignore[method-assign]
    engine.info = type(engine.info)(max_model_len=200_000, vocab_size=0x110000, max_num_seqs=8, max_token_chars=1)
    client = await make_client()
    small = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    big = {"messages": [{"role": "user", "content": "x" * 40_000}], "max_tokens": 2}
    assert (await client.post("/v1/chat/completions", json=small)).status_code == 200
    assert (await client.post("/v1/chat/completions", json=big)).status_code == 200
    assert len(threads) == 2 and all(name.startswith("vif-prepare") for name in threads)


async def test_the_engine_counts_latency_from_the_bodys_arrival(make_client, engine: FakeEngine) -> None:
    """As vLLM's server does, the engine's latency metrics start before the prompt is rendered and tokenised."""
    rendered_at = []
    render = engine.render_chat

    def slow_render(messages, template, tools=None):
        rendered_at.append(time.time())
        time.sleep(0.05)
        return render(messages, template, tools)

    engine.render_chat = slow_render  # type: ignore[method-assign]
    client = await make_client()
    before = time.time()
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assert (await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})).status_code == 200
    arrived = engine.arrivals
    assert len(arrived) == 2 and all(a is not None for a in arrived)
    assert before <= arrived[0] <= rendered_at[0] and arrived[1] > rendered_at[0] + 0.05
