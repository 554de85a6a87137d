"""Counting a response's tokens as it passes the router (`usage.py`)."""

from __future__ import annotations

import orjson
import pytest

from vif.runtime.router.usage import UsageMeter, ask_for_usage

USAGE_EVENT = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}'


def event(text: str) -> bytes:
    return b"data: " + orjson.dumps({"id": "c", "choices": [{"index": 0, "delta": {"content": text}}]})


class Charges:
    def __init__(self) -> None:
        self.made: list[int] = []

    async def __call__(self, tokens: int) -> None:
        self.made.append(tokens)


def test_a_stream_is_asked_for_its_usage_and_nothing_else_changes() -> None:
    body, wants = ask_for_usage(orjson.dumps({"messages": [], "stream": True, "stream_options": {}}))
    assert orjson.loads(body) == {"messages": [], "stream": True, "stream_options": {"include_usage": True}}
    assert wants is False
    asked = orjson.dumps({"stream": True, "stream_options": {"include_usage": True}})
    assert ask_for_usage(asked) == (asked, True)
    for untouched in (b'{"prompt": "x"}', b"not json", b'{"stream": true, "stream_options": 3}'):
        assert ask_for_usage(untouched) == (untouched, True)


async def test_a_streams_usage_event_is_read_and_kept_from_a_client_that_did_not_ask() -> None:
    charges = Charges()
    meter = UsageMeter(charges, client_wants_usage=False)
    meter.start("text/event-stream")
    # Chunks do not follow event boundaries: the meter passes whole events on.
    passed = await meter.feed(event("a") + b"\n\n" + event("b")[:10])
    passed += await meter.feed(event("b")[10:] + b"\n\n" + USAGE_EVENT + b"\n\ndata: [DONE]\n\n")
    assert charges.made == [10]  # before [DONE] reaches the client, who may send its next request at once
    passed += await meter.close()
    assert passed == event("a") + b"\n\n" + event("b") + b"\n\ndata: [DONE]\n\n"
    assert (meter.prompt_tokens, meter.completion_tokens) == (7, 3)  # the replica's count, not the events'
    assert charges.made == [10]


async def test_a_client_that_asked_gets_the_usage_event() -> None:
    meter = UsageMeter(Charges(), client_wants_usage=True)
    meter.start("text/event-stream")
    passed = await meter.feed(event("a") + b"\n\n" + USAGE_EVENT + b"\n\n") + await meter.close()
    assert passed == event("a") + b"\n\n" + USAGE_EVENT + b"\n\n"


async def test_a_long_stream_is_charged_as_it_runs_and_a_cut_one_for_what_it_produced() -> None:
    now = [0.0]
    charges = Charges()
    meter = UsageMeter(charges, client_wants_usage=False, clock=lambda: now[0])
    meter.start("text/event-stream")
    for second in range(3):
        for _ in range(5):
            await meter.feed(event("x") + b"\n\n")
        now[0] = second + 1.0
    await meter.feed(event("x") + b"\n\n")  # charged at the next event after each second
    await meter.settle()  # the stream broke here: no usage event came
    assert charges.made == [6, 5, 5]
    assert meter.completion_tokens == 16


async def test_a_whole_answer_is_charged_its_usage() -> None:
    charges = Charges()
    meter = UsageMeter(charges, client_wants_usage=True)
    meter.start("application/json")
    answer = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 30}})
    assert await meter.feed(answer[:20]) + await meter.feed(answer[20:]) == b""  # held until it is charged
    assert await meter.close() == answer
    assert charges.made == [42]


async def test_an_answer_too_large_to_count_is_passed_on_as_it_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vif.runtime.router.usage.MAX_WHOLE_BYTES", 10)
    charges = Charges()
    meter = UsageMeter(charges, client_wants_usage=True)
    meter.start("application/json")
    passed = [await meter.feed(b"0123456"), await meter.feed(b"789abc"), await meter.feed(b"def")]
    assert passed == [b"", b"0123456789abc", b"def"] and await meter.close() == b""
    assert charges.made == []


@pytest.mark.parametrize("answer", [b'{"error": {"message": "bad"}}', b"<html>", b""])
async def test_an_answer_without_usage_is_charged_nothing(answer: bytes) -> None:
    charges = Charges()
    meter = UsageMeter(charges, client_wants_usage=True)
    meter.start("application/json")
    await meter.feed(answer)
    assert await meter.close() == answer
    assert charges.made == []


async def test_the_prompt_is_charged_up_front_and_corrected_by_the_replicas_count() -> None:
    charges = Charges()
    meter = UsageMeter(charges, client_wants_usage=False, prompt_estimate=25)
    await meter.settle()  # before the request is forwarded: a client that leaves now has paid for its prompt
    meter.start("text/event-stream")
    await meter.feed(event("a") + b"\n\n" + USAGE_EVENT + b"\n\n")
    assert charges.made == [25, -15]  # the replica counted 7 + 3: what the estimate took too much comes back


async def test_generates_events_and_events_without_a_space_are_counted() -> None:
    meter = UsageMeter(Charges(), client_wants_usage=True)
    meter.start("text/event-stream")
    passed = await meter.feed(b'data: {"id":"g","output":"Hi"}\n\ndata:{"id":"g","output":"!"}\n\n: a comment\n\n')
    assert meter.completion_tokens == 2 and passed.endswith(b": a comment\n\n")


async def test_a_stream_the_meter_cannot_read_passes_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vif.runtime.router.usage.MAX_WHOLE_BYTES", 10)
    meter = UsageMeter(Charges(), client_wants_usage=False)
    meter.start("text/event-stream")
    chunks = [b"data: 0123456789abcdef", b"more\r\n\r\n", USAGE_EVENT + b"\n\n"]
    assert b"".join([await meter.feed(c) for c in chunks]) + await meter.close() == b"".join(chunks)
