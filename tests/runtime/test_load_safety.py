"""Load safety: slots counted in sequences and taken after the body, 408 for slow bodies, stalled readers
aborted, oversized prompts refused before tokenising, big bodies prepared off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import aclosing

import orjson
import pytest
from starlette.applications import Starlette

from helpers.fake_engine import FakeEngine
from helpers.waits import eventually
from vif.runtime.app.body_check import BodyChecker
from vif.runtime.app.factory import ServerSettings
from vif.runtime.app.inference import EventStream, InferenceEndpoint
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.app.limiter import SequenceLimiter
from vif.runtime.protocols.errors import APIError
from vif.runtime.shared.asgi import ClientGone, read_body

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

    with SequenceLimiter(8, 8).slot(1) as slot:
        await asyncio.wait_for(EventStream(endpoint, APIError.body, send, receive).run(chunks(), slot), 5)
    assert sent[0]["status"] == 200 and len(sent) == 3


async def test_a_second_cancellation_while_the_engine_request_is_aborted_still_closes_the_stream(
    engine: FakeEngine,
) -> None:
    """The client leaves; while the engine's stream aborts its request (an await), the shutdown deadline cancels
    the request too. The stream must still be closed once, by the task that opened it, with no error."""
    endpoint = InferenceEndpoint("chat", Lifecycle(), SequenceLimiter(8, 8), _metrics(), None, BodyChecker(), 1, 5)  # type: ignore[arg-type]
    sent: list[dict] = []
    left, aborting, aborted = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def send(message: dict) -> None:
        sent.append(message)
        if len(sent) == 3:
            left.set()

    async def receive() -> dict:
        await left.wait()
        return {"type": "http.disconnect"}

    async def chunks():
        try:
            for i in range(1000):
                await asyncio.sleep(0.001)
                yield {"i": i}
        finally:
            aborting.set()
            await asyncio.sleep(0.05)  # vLLM's abort is awaited
            aborted.set()

    async def stream() -> None:
        with endpoint.limiter.slot(1) as slot:
            async with aclosing(chunks()) as events:
                await EventStream(endpoint, APIError.body, send, receive).run(events, slot)

    task = asyncio.create_task(stream())
    await asyncio.wait_for(aborting.wait(), 5)
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert aborted.is_set() and endpoint.limiter.active == 0 and endpoint.limiter.unsent == 0
    assert task.cancelled() or task.exception() is None, task.exception()


class StalledReader:
    """A raw ASGI client that sends its whole body, then takes the first message of the answer and reads nothing
    more (its socket's buffer full) until `read_on` is set; it never disconnects."""

    def __init__(self, body: dict) -> None:
        self.request = [{"type": "http.request", "body": orjson.dumps(body)}]
        self.messages: list[dict] = []
        self.read_on = asyncio.Event()

    def call(self, app: Starlette, path: str) -> asyncio.Task:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"vif"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1), "server": ("vif", 80),
        }  # fmt: skip
        return asyncio.create_task(app(scope, self.receive, self.send))

    async def receive(self) -> dict:
        if self.request:
            return self.request.pop()
        await asyncio.Event().wait()
        return {}

    async def send(self, message: dict) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body":
            await self.read_on.wait()

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


async def test_a_slow_reader_hands_its_slot_back_when_the_engine_is_done(make_app, engine: FakeEngine) -> None:
    """The engine's work is over long before a slow client has read it: the sequences go back then, and the answer
    still reaches the client whole."""
    engine.delay = 0.001
    app, client = await make_app(ServerSettings(limit_concurrency=1, send_timeout=60))
    stream = {**CHAT, "stream": True, **LONG}
    reader = StalledReader(stream)
    stalled = reader.call(app, "/v1/chat/completions")
    await eventually(lambda: len(reader.messages) == 2, "the first event sent to a client that reads nothing")
    assert reader.messages[0]["status"] == 200

    async def another_answered() -> bool:
        return (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200

    await eventually(another_answered, "the one slot free again while the first client reads nothing", every=0.02)
    assert not stalled.done() and not engine.aborted
    reader.read_on.set()
    await asyncio.wait_for(stalled, 5)
    whole = await client.post("/v1/chat/completions", json=stream)  # the same stream, read at once
    assert _contents(reader.body()) == _contents(whole.content)
    assert reader.body().endswith(b"data: [DONE]\n\n") and len(_contents(reader.body())) == LONG["max_tokens"]


async def test_a_whole_answer_waits_without_a_slot_and_is_dropped_after_the_send_timeout(
    make_app, engine: FakeEngine
) -> None:
    app, client = await make_app(ServerSettings(limit_concurrency=1, send_timeout=60))
    reader = StalledReader(CHAT)
    stalled = reader.call(app, "/v1/chat/completions")
    await eventually(lambda: len(reader.messages) == 2, "the answer's body sent to a client that reads nothing")
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert not stalled.done()
    reader.read_on.set()
    await asyncio.wait_for(stalled, 5)
    assert orjson.loads(reader.body())["choices"][0]["message"]["content"] == engine.reply

    app, client = await make_app(ServerSettings(limit_concurrency=1, send_timeout=0.2))
    never = StalledReader(CHAT)
    await asyncio.wait_for(never.call(app, "/v1/chat/completions"), 5)  # returns: the answer is dropped
    assert [m["type"] for m in never.messages] == ["http.response.start", "http.response.body"]


@pytest.mark.parametrize(("budget", "while_stalled"), [(64 << 20, 200), (1000, 429)])
async def test_a_large_whole_answer_goes_in_pieces_and_gives_its_slot_back_within_the_budget(
    make_app, engine: FakeEngine, budget: int, while_stalled: int
) -> None:
    """uvicorn would take one large message whole into its buffer, out of the budget's sight and the timeout's."""
    engine.reply = "x" * 100_000  # one step of 100,000 characters
    app, client = await make_app(ServerSettings(limit_concurrency=1, send_timeout=60, max_unsent_bytes=budget))
    reader = StalledReader(CHAT)
    stalled = reader.call(app, "/v1/chat/completions")
    await eventually(lambda: len(reader.messages) == 2, "the first piece sent to a client that reads nothing")
    assert reader.messages[1]["more_body"] is True and len(reader.messages[1]["body"]) == 64 << 10
    engine.reply = "Paris."
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == while_stalled
    reader.read_on.set()
    await asyncio.wait_for(stalled, 5)
    body = reader.body()
    assert int(dict(reader.messages[0]["headers"])[b"content-length"]) == len(body)
    assert orjson.loads(body)["choices"][0]["message"]["content"] == "x" * 100_000
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_past_the_budget_a_stalled_reader_keeps_its_slot_and_nothing_more_is_read(
    make_app, engine: FakeEngine
) -> None:
    """A budget of one byte: the stream reads one event ahead of its client, as with no read-ahead at all."""
    engine.delay = 0.001
    app, client = await make_app(ServerSettings(limit_concurrency=1, send_timeout=60, max_unsent_bytes=1))
    reader = StalledReader({**CHAT, "stream": True, **LONG})
    stalled = reader.call(app, "/v1/chat/completions")
    await eventually(lambda: len(reader.messages) == 2, "the first event sent to a client that reads nothing")
    (request_id,) = engine.produced
    await eventually(lambda: engine.produced[request_id] == 2, "the next step read from the engine")
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 429
    assert engine.produced[request_id] == 2, "read past the budget"
    reader.read_on.set()
    await asyncio.wait_for(stalled, 5)
    assert len(_contents(reader.body())) == LONG["max_tokens"]
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_the_servers_own_cancel_after_the_shutdown_abort_ends_the_request(make_app, engine: FakeEngine) -> None:
    """The shutdown deadline's abort is answered once (an error event); the server's own cancel, when its graceful
    shutdown runs out while that event waits on a client that reads nothing, ends the request: no second answer."""
    engine.delay = 0.01
    lifecycle = Lifecycle()
    app, _ = await make_app(ServerSettings(send_timeout=60), lifecycle=lifecycle)
    sent: list[dict] = []
    error_waits = asyncio.Event()

    async def send(message: dict) -> None:
        sent.append(message)
        if b"shutting_down" in message.get("body", b""):  # the abort's error event; the client reads nothing
            error_waits.set()
            await asyncio.Event().wait()

    reader = StalledReader({**CHAT, "stream": True, "max_tokens": 200, "ignore_eos": True})
    reader.send = send  # type: ignore[method-assign]
    task = reader.call(app, "/v1/chat/completions")
    await eventually(lambda: len(sent) >= 3, "the stream started")
    lifecycle.abort_in_flight()
    await asyncio.wait_for(error_waits.wait(), 5)
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert task.cancelled()
    assert [m["type"] for m in sent].count("http.response.start") == 1


def test_unsent_bytes_are_counted_from_queued_to_sent_and_the_slot_goes_back_once() -> None:
    limiter = SequenceLimiter(limit=4, per_request=4, max_unsent_bytes=100)
    with limiter.slot(2) as first, limiter.slot(2) as second:
        assert limiter.active == 4 and first.may_read_ahead
        first.queued(120)
        second.queued(10)
        assert limiter.unsent == 130 and not first.may_read_ahead and not second.may_read_ahead
        second.sent(10)
        assert second.may_read_ahead, "a stream whose client took everything reads on, whatever the others hold"
        assert not first.may_read_ahead  # every answer's unsent bytes together: 120 of 100
        first.sent(20)
        assert first.may_read_ahead and limiter.unsent == 100
        first.hand_back()
        first.hand_back()
        assert limiter.active == 2
        second.sent(1000)  # only what was counted is taken off
        assert limiter.unsent == 100
    assert limiter.active == 0 and limiter.unsent == 0


def _contents(sse: bytes) -> list[str]:
    events = [line.removeprefix(b"data: ") for line in sse.split(b"\n\n") if line.startswith(b"data: {")]
    return [c["delta"]["content"] for e in events for c in orjson.loads(e)["choices"] if c["delta"].get("content")]


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
