"""Tenants' limits for the model as a whole: two real `vif-router` processes sharing a real Redis, in front of a real
runtime (vLLM on the default model) that accepts the tenants' keys from the same file; clients are the `openai`
SDK, as a tenant's application would be."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from helpers.processes import stop_group
from helpers.redis_server import RedisServer, running_redis
from helpers.router_process import running_router
from helpers.runtime_process import MODEL, RuntimeProcess, start_runtime
from helpers.waits import wait_for

KEYS = {"search": "sk-search", "batch": "sk-batch"}
CHAT = [{"role": "user", "content": "Name a colour."}]


def write_tenants(folder: Path, **search_limits: int) -> Path:
    """`search` with the given limits, `batch` without any; their keys as files, as the operator mounts them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in KEYS.items():
        (folder / name).write_text(key)
    tenants = [{"name": "search", "keyFile": "search", **search_limits}, {"name": "batch", "keyFile": "batch"}]
    path = folder / "tenants.json"
    path.write_text(json.dumps({"tenants": tenants}))
    return path


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    """One runtime that takes the tenants' keys (and no other), as behind a router the operator configured."""
    folder = tmp_path_factory.mktemp("replica")
    runtime = start_runtime(folder, "--tenants-file", str(write_tenants(folder / "tenants")), "--max-num-seqs", "4")
    yield runtime
    stop_group(runtime.proc, grace=30)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@contextlib.contextmanager
def two_routers(tmp_path: Path, replica: RuntimeProcess, tenants: Path, *args: str) -> Iterator[list[str]]:
    """Two routers of one model, as the operator runs them with `routing.replicas: 2`."""
    common = ("--endpoint", replica.base_url, "--tenants-file", str(tenants), "--router-replicas", "2", *args)
    with contextlib.ExitStack() as stack:
        urls = []
        for name in ("router-a", "router-b"):
            (tmp_path / name).mkdir(parents=True)
            urls.append(stack.enter_context(running_router(tmp_path / name, *common)))
        yield urls


def client(url: str, tenant: str = "search") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS[tenant], max_retries=0, timeout=120)


def complete(url: str, tenant: str = "search") -> httpx.Headers:
    """One short completion; its response headers (an `openai.RateLimitError` when refused)."""
    raw = client(url, tenant).completions.with_raw_response.create(model=MODEL, prompt="Hi", max_tokens=2)
    return raw.headers


def test_a_limit_holds_across_router_replicas_and_the_headers_count_down(
    tmp_path: Path, replica: RuntimeProcess, redis: RedisServer
) -> None:
    tenants = write_tenants(tmp_path / "tenants", requestsPerMinute=4)
    with two_routers(tmp_path, replica, tenants, "--redis-url", redis.url, "--model-name", "shared") as (a, b):
        counted = [complete(url)["x-ratelimit-remaining-requests"] for url in (a, b, a, b)]
        with pytest.raises(openai.RateLimitError) as on_a:
            complete(a)
        with pytest.raises(openai.RateLimitError) as on_b:
            complete(b)
        unlimited = complete(b, "batch")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{a}/v1", api_key="sk-wrong", max_retries=0).models.list()
    assert counted == ["3", "2", "1", "0"]  # one bucket for the model, whichever router took the request
    for refused in (on_a.value, on_b.value):
        assert refused.code == "rate_limit_exceeded"
        assert 1 <= int(refused.response.headers["retry-after"]) <= 15  # a request comes back every 15 s
        assert refused.response.headers["x-ratelimit-limit-requests"] == "4"
    assert "x-ratelimit-limit-requests" not in unlimited


def test_tokens_are_counted_from_the_stream_and_stop_the_tenant_when_spent(
    tmp_path: Path, replica: RuntimeProcess, redis: RedisServer
) -> None:
    tenants = write_tenants(tmp_path / "tenants", tokensPerMinute=30)  # under the chat prompt's own tokens
    with two_routers(tmp_path, replica, tenants, "--redis-url", redis.url, "--model-name", "tokens") as (a, b):
        chat = client(a).chat.completions.create(model=MODEL, messages=CHAT, max_tokens=16, stream=True)
        chunks = list(chat)
        with pytest.raises(openai.RateLimitError) as refused:
            complete(b)
        metrics = httpx.get(f"{a}/metrics").text
        asked = client(b, "batch").chat.completions.create(
            model=MODEL, messages=CHAT, max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
        asked_chunks = list(asked)
    assert chunks and all(chunk.choices for chunk in chunks)  # the usage event the router asked for is kept back
    assert "tokens per minute" in refused.value.message  # the usage event's prompt tokens alone are over 30
    prompt = next(line for line in metrics.splitlines() if 'kind="prompt",model="tokens",tenant="search"' in line)
    assert float(prompt.split()[-1]) > 30  # the chat template's tokens and the question's
    assert asked_chunks[-1].usage is not None and asked_chunks[-1].usage.completion_tokens <= 4


def test_without_redis_a_router_fails_open_to_its_share_or_closed_as_told(
    tmp_path: Path, replica: RuntimeProcess, redis: RedisServer
) -> None:
    tenants = write_tenants(tmp_path / "tenants", requestsPerMinute=4)
    with contextlib.ExitStack() as stack:
        opened = stack.enter_context(two_routers(
            tmp_path / "open", replica, tenants, "--redis-url", redis.url, "--redis-down", "open",
            "--model-name", "outage-open",
        ))  # fmt: skip
        closed = stack.enter_context(two_routers(
            tmp_path / "closed", replica, tenants, "--redis-url", redis.url, "--redis-down", "closed",
            "--model-name", "outage-closed",
        ))  # fmt: skip
        redis.stop()
        try:
            during_open = [_status(opened[0]) for _ in range(3)]
            during_closed = _status(closed[0])
            refusal = httpx.post(f"{closed[0]}/v1/completions", headers=_auth(), json={"prompt": "Hi"}).json()
            errors = httpx.get(f"{opened[0]}/metrics").text
        finally:
            redis.start()
        # Each router leaves Redis alone for a few seconds after it failed (quota.BREAK_SECONDS), then uses it again.
        wait_for(lambda: _status(closed[0]) == 200, "the closed router admitting through Redis again", 30)
        after = [_status(url) for url in (closed[0], closed[1])]
    assert during_open == [200, 200, 429]  # its share of 4 a minute, in its own memory
    assert during_closed == 503 and refusal["error"]["code"] == "quota_store_unavailable"
    assert 'vif_router_quota_store_errors_total{model="outage-open"} 3.0' in errors
    assert after == [200, 200]  # Redis back (empty): the shared buckets again, without a restart
    assert "rate-limit store reachable again" in (tmp_path / "closed/router-a/router.log").read_text()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS['search']}"}


def _status(url: str) -> int:
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 2}
    return httpx.post(f"{url}/v1/completions", headers=_auth(), json=body, timeout=120).status_code
