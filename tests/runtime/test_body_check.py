"""Very large bodies are vetted by a child process, so a refused one is never parsed in the server's."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import orjson
import pytest

from vif.runtime.app.body_check import CHECK_ABOVE_BYTES, BodyChecker
from vif.runtime.protocols.chat import ChatCompletionRequest
from vif.runtime.protocols.errors import APIError

MANY = orjson.dumps({"messages": [{"role": "user", "content": "hi there"}] * 40_000})
LONG_TEXT = orjson.dumps({"messages": [{"role": "user", "content": "x" * (CHECK_ABOVE_BYTES + 1)}]})


@pytest.fixture(scope="module")
def checker() -> Iterator[BodyChecker]:
    checker = BodyChecker()
    yield checker
    checker.shutdown()


async def test_the_child_refuses_what_the_model_refuses(checker: BodyChecker) -> None:
    with pytest.raises(APIError) as refused:
        await checker.check(ChatCompletionRequest, MANY)
    assert (refused.value.param, refused.value.code) == ("messages", "too_long")
    with pytest.raises(APIError) as broken:
        await checker.check(ChatCompletionRequest, b"{" * (CHECK_ABOVE_BYTES + 1))
    assert broken.value.code == "invalid_json"


async def test_the_child_passes_what_the_model_accepts(checker: BodyChecker) -> None:
    await checker.check(ChatCompletionRequest, LONG_TEXT)


async def test_small_bodies_are_not_sent(checker: BodyChecker) -> None:
    await checker.check(ChatCompletionRequest, b"not json, but small")  # left to the server's own parse


async def test_a_dead_child_is_replaced(checker: BodyChecker) -> None:
    await checker.check(ChatCompletionRequest, LONG_TEXT)  # the child is up
    pid = next(iter(checker._pool._processes))  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    await checker.check(ChatCompletionRequest, MANY)  # this once, the server's own checks decide
    with pytest.raises(APIError):
        await checker.check(ChatCompletionRequest, MANY)


async def test_the_app_refuses_a_huge_body_through_the_child(make_client) -> None:
    client = await make_client()
    r = await client.post("/v1/chat/completions", content=MANY, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
