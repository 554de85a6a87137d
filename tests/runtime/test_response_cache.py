"""The response cache: exact repeats of deterministic requests answered from memory, per tenant, within bounds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from helpers.fake_engine import FakeEngine
from helpers.waits import eventually
from vif.runtime.app.response_cache import ENTRY_BYTES, CacheSettings, Directives, ResponseCache, StoredAnswer
from vif.runtime.app.settings import ServerSettings
from vif.runtime.cli import _cache_settings, own_parser
from vif.runtime.config import ConfigError
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics

MODEL = "smollm2-135m-instruct"
MakeApp = Callable[..., Awaitable[tuple[Starlette, httpx.AsyncClient]]]
CHAT = "/v1/chat/completions"
ON = ServerSettings(response_cache=CacheSettings(max_entries=8))


def chat(content: str = "capital of France?", **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "temperature": 0, **fields}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the store --------------------------------------------------------------------------------------------------


def answer(size: int = 0) -> StoredAnswer:
    """An answer whose entry takes ENTRY_BYTES + `size` bytes."""
    return StoredAnswer(b"x" * size, ())


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = ResponseCache(CacheSettings(max_entries=2))
    a, b, c = answer(1), answer(2), answer(3)
    cache.put(b"a", a)
    cache.put(b"b", b)
    assert cache.get(b"a") is a  # now b is the least recently used
    cache.put(b"c", c)
    assert (cache.get(b"a"), cache.get(b"b"), cache.get(b"c")) == (a, None, c)


def test_bytes_bound_the_cache_and_an_answer_larger_than_all_is_not_kept() -> None:
    cache = ResponseCache(CacheSettings(max_entries=10, max_bytes=2 * ENTRY_BYTES + 10))
    cache.put(b"a", answer(6))
    cache.put(b"b", answer(4))
    assert cache.bytes == 2 * ENTRY_BYTES + 10 and len(cache) == 2
    cache.put(b"c", answer(3))  # over by 3 bytes: a, the oldest, goes
    assert cache.get(b"a") is None and cache.bytes == 2 * ENTRY_BYTES + 7 and len(cache) == 2
    cache.put(b"big", answer(ENTRY_BYTES + 11))
    assert cache.get(b"big") is None and cache.bytes == 2 * ENTRY_BYTES + 7
    cache.put(b"b", answer(2))  # replacing an entry counts its new size only
    assert cache.bytes == 2 * ENTRY_BYTES + 5


def test_an_entry_older_than_its_time_to_live_is_gone() -> None:
    clock = Clock()
    cache = ResponseCache(CacheSettings(max_entries=4, ttl_seconds=60), clock)
    cache.put(b"a", answer())
    clock.now = 60
    assert cache.get(b"a") is not None
    clock.now = 60.5
    assert cache.get(b"a") is None and len(cache) == 0 and cache.bytes == 0
    cache.put(b"b", answer())
    clock.now = 200
    cache.put(b"c", answer())  # an expired entry at the least recently used end goes when another is stored
    assert len(cache) == 1 and cache.get(b"c") is not None


def test_a_hit_gets_its_own_id_and_created_and_the_rest_as_stored() -> None:
    ctx = SimpleNamespace(request_id="chatcmpl-new", created=200)
    stored = StoredAnswer.of({"id": "chatcmpl-old", "object": "chat.completion", "created": 100, "choices": [1]})
    assert orjson.loads(stored.renewed(ctx)) == {  # type: ignore[arg-type]
        "id": "chatcmpl-new", "object": "chat.completion", "created": 200, "choices": [1]
    }  # fmt: skip
    assert StoredAnswer.of({"output": "x"}).renewed(ctx) == b'{"output":"x"}'  # type: ignore[arg-type]
    assert orjson.loads(StoredAnswer.of({"id": "a"}).renewed(ctx)) == {"id": "chatcmpl-new"}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "read", "write"),
    [
        (None, True, True),
        (b"max-age=60", True, True),
        (b"No-Cache", False, True),
        (b"max-age = 0", False, True),
        (b"no-cache, no-store", False, False),
    ],
)
def test_cache_control(header: bytes | None, read: bool, write: bool) -> None:
    assert Directives.parse(header) == Directives(read, write)


@pytest.mark.parametrize("flag", [["--response-cache-entries", "-1"], ["--response-cache-bytes", "0"],
                                  ["--response-cache-ttl", "0"]])  # fmt: skip
def test_bad_bounds_stop_start_up(flag: list[str]) -> None:
    with pytest.raises(ConfigError, match="--response-cache"):
        _cache_settings(own_parser().parse_args(flag))
    assert _cache_settings(own_parser().parse_args([])) == CacheSettings()  # off


# --- in the app -------------------------------------------------------------------------------------------------


async def test_off_unless_configured(make_app: MakeApp, engine: FakeEngine) -> None:
    _, client = await make_app()
    for _ in range(2):
        r = await client.post(CHAT, json=chat())
        assert r.status_code == 200 and "x-vif-cache" not in r.headers
    assert len(engine.requests) == 2


async def test_a_repeat_is_answered_from_the_cache(make_app: MakeApp, engine: FakeEngine) -> None:
    _, client = await make_app(ON)
    first = await client.post(CHAT, json=chat())
    second = await client.post(CHAT, json=chat())
    assert first.headers["x-vif-cache"] == "miss" and second.headers["x-vif-cache"] == "hit"
    assert len(engine.requests) == 1
    assert second.json()["choices"] == first.json()["choices"] and second.json()["usage"] == first.json()["usage"]
    assert second.json()["id"] != first.json()["id"]
    assert int(second.headers["content-length"]) == len(second.content)
    other = await client.post(CHAT, json=chat("capital of Spain?"))
    assert other.headers["x-vif-cache"] == "miss" and len(engine.requests) == 2


@pytest.mark.parametrize(
    ("fields", "cached"),
    [
        ({"temperature": 0.7}, False),
        ({"temperature": 0.7, "seed": 7}, True),
        ({"stream": True}, False),
    ],
)
async def test_only_deterministic_whole_answers_are_cached(
    make_app: MakeApp, engine: FakeEngine, fields: dict[str, Any], cached: bool
) -> None:
    _, client = await make_app(ON)
    for _ in range(2):
        r = await client.post(CHAT, json=chat(**fields))
        assert r.status_code == 200
    assert len(engine.requests) == (1 if cached else 2)
    assert ("x-vif-cache" in r.headers) is cached


TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    "variant",
    [
        {"max_tokens": 3},
        {"stop": ["capital"]},
        {"logprobs": True, "top_logprobs": 2},
        {"response_format": {"type": "json_object"}},
        {"tools": [TOOL]},
        {"seed": 3},
        {"model": "pirate"},  # an adapter of the model
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "capital of France?"}]},
    ],
)
async def test_any_difference_in_the_request_is_another_entry(
    make_app: MakeApp, engine: FakeEngine, variant: dict[str, Any]
) -> None:
    _, client = await make_app(ON, model=ServedModel(MODEL, adapters=("pirate",)))
    assert (await client.post(CHAT, json=chat())).headers["x-vif-cache"] == "miss"
    r = await client.post(CHAT, json=chat() | variant)
    assert r.status_code == 200 and r.headers["x-vif-cache"] == "miss", r.text
    assert (await client.post(CHAT, json=chat() | variant)).headers["x-vif-cache"] == "hit"
    assert len(engine.requests) == 2


async def test_the_protocols_never_share_entries(make_app: MakeApp, engine: FakeEngine) -> None:
    _, client = await make_app(ON)
    completion = {"prompt": "capital of France?", "temperature": 0}
    assert (await client.post("/v1/completions", json=completion)).headers["x-vif-cache"] == "miss"
    assert (await client.post("/v1/completions", json=completion | {"echo": True})).headers["x-vif-cache"] == "miss"
    assert (await client.post(CHAT, json=chat())).headers["x-vif-cache"] == "miss"
    assert len(engine.requests) == 3


async def test_a_hit_takes_no_engine_slot(make_app: MakeApp, engine: FakeEngine) -> None:
    _, client = await make_app(ServerSettings(limit_concurrency=1, response_cache=ON.response_cache))
    await client.post(CHAT, json=chat())
    engine.delay = 0.05  # 200 steps: ten seconds for the next answer, which holds the only slot meanwhile
    slow = asyncio.create_task(client.post(CHAT, json=chat("a long one", max_tokens=200, ignore_eos=True)))
    await eventually(lambda: len(engine.requests) == 2, "the slow request reached the engine")
    assert (await client.post(CHAT, json=chat("another"))).status_code == 429
    assert (await client.post(CHAT, json=chat())).headers["x-vif-cache"] == "hit"
    assert not slow.done()
    engine.delay = 0  # the rest of its steps at once
    assert (await slow).status_code == 200


async def test_tenants_never_share_entries(make_app: MakeApp, engine: FakeEngine) -> None:
    _, client = await make_app(ServerSettings(api_keys=("key-a", "key-b"), response_cache=ON.response_cache))
    a, b = ({"authorization": f"Bearer {key}"} for key in ("key-a", "key-b"))
    assert (await client.post(CHAT, json=chat(), headers=a)).headers["x-vif-cache"] == "miss"
    assert (await client.post(CHAT, json=chat(), headers=b)).headers["x-vif-cache"] == "miss"
    assert (await client.post(CHAT, json=chat(), headers=a)).headers["x-vif-cache"] == "hit"
    assert len(engine.requests) == 2


async def test_no_cache_asks_the_engine_and_no_store_keeps_nothing(make_app: MakeApp, engine: FakeEngine) -> None:
    _, client = await make_app(ON)
    fresh = await client.post(CHAT, json=chat(), headers={"cache-control": "no-cache"})
    assert fresh.headers["x-vif-cache"] == "miss"
    assert (await client.post(CHAT, json=chat())).headers["x-vif-cache"] == "hit"  # the fresh answer was stored
    assert (await client.post(CHAT, json=chat(), headers={"cache-control": "no-cache"})).status_code == 200
    assert len(engine.requests) == 2
    unstored = chat("not to be kept")
    assert "x-vif-cache" not in (await client.post(CHAT, json=unstored, headers={"cache-control": "no-store"})).headers
    assert (await client.post(CHAT, json=unstored)).headers["x-vif-cache"] == "miss"
    assert len(engine.requests) == 4


async def test_errors_are_not_cached(make_app: MakeApp, engine: FakeEngine) -> None:
    _, client = await make_app(ON)
    engine.fail_with = RuntimeError("engine trouble")
    assert (await client.post(CHAT, json=chat())).status_code == 500
    engine.fail_with = None
    assert (await client.post(CHAT, json=chat())).headers["x-vif-cache"] == "miss"


async def test_lookups_and_size_in_metrics(make_app: MakeApp, metrics: RuntimeMetrics) -> None:
    _, client = await make_app(ON)
    for headers in ({}, {}, {}, {"cache-control": "no-cache"}):
        await client.post(CHAT, json=chat(), headers=headers)
    text = (await client.get("/metrics")).text
    for result, count in (("hit", 2), ("miss", 1), ("bypass", 1)):
        assert (
            f'vif_response_cache_lookups_total{{model="smollm2-135m-instruct",protocol="chat",result="{result}"}} {count}.0'
            in text
        )
    assert 'vif_response_cache_entries{model="smollm2-135m-instruct"} 1.0' in text
