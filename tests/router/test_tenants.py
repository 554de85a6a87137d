"""Tenants at the router: each key's limits, OpenAI's rate-limit headers, and usage per tenant (one router, its
buckets in memory; several routers sharing Redis: integration/test_tenants.py)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import orjson

from tests.router.conftest import WAIT, StartReplica, StartRouter, wait_until

SEARCH = {"Authorization": "Bearer sk-search"}
BATCH = {"Authorization": "Bearer sk-batch"}


def tenants_file(tmp_path: Path, **search_limits: int) -> Path:
    path = tmp_path / "tenants.json"
    path.write_bytes(orjson.dumps({"tenants": [
        {"name": "search", "keySha256": hashlib.sha256(b"sk-search").hexdigest(), **search_limits},
        {"name": "batch", "keySha256": hashlib.sha256(b"sk-batch").hexdigest()},
    ]}))  # fmt: skip
    return path


async def test_a_tenant_over_its_requests_per_minute_gets_429_and_the_headers_count_down(
    start_replica: StartReplica, start_router: StartRouter, tmp_path: Path
) -> None:
    replica, served = await start_replica("a")
    url, _ = await start_router([served.url], tenants_file=tenants_file(tmp_path, requestsPerMinute=2))
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        answers = [await client.post("/v1/completions", json={"prompt": "hi"}, headers=SEARCH) for _ in range(3)]
        other = await client.post("/v1/completions", json={"prompt": "hi"}, headers=BATCH)
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["1", "0", "0"]
    assert all(a.headers["x-ratelimit-limit-requests"] == "2" for a in answers)
    refused = answers[2]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 28 <= int(refused.headers["retry-after"]) <= 30  # one request at 2 a minute
    assert other.status_code == 200 and "x-ratelimit-limit-requests" not in other.headers  # batch has no limit
    assert len(replica.seen) == 3  # the refused request never reached the replica


async def test_a_streams_tokens_are_counted_and_stop_the_tenant_when_spent(
    start_replica: StartReplica, start_router: StartRouter, tmp_path: Path
) -> None:
    replica, served = await start_replica("a", events=asyncio.Queue())
    url, _ = await start_router([served.url], tenants_file=tenants_file(tmp_path, tokensPerMinute=100))
    assert replica.events is not None
    for item in (b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n',
                 b'data: {"choices":[],"usage":{"prompt_tokens":40,"completion_tokens":80}}\n\n',
                 b"data: [DONE]\n\n", None):  # fmt: skip
        replica.events.put_nowait(item)
    request = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        streamed = await client.post("/v1/chat/completions", json=request, headers=SEARCH)
        after = await client.post("/v1/chat/completions", json=request, headers=SEARCH)
        metrics = (await client.get("/metrics")).text
    assert streamed.status_code == 200
    assert streamed.text == 'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n'  # usage kept back
    assert orjson.loads(replica.seen[0]["body"])["stream_options"] == {"include_usage": True}
    assert streamed.headers["x-ratelimit-remaining-tokens"] == "100"  # counted at admission, before the answer
    assert after.status_code == 429 and "on tokens per minute" in after.json()["error"]["message"]
    assert 12 <= int(after.headers["retry-after"]) <= 13  # 120 charged: 21 to go back to one, at 100 a minute
    assert 'vif_router_tenant_tokens_total{kind="prompt",model="m",tenant="search"} 40.0' in metrics
    assert 'vif_router_tenant_tokens_total{kind="completion",model="m",tenant="search"} 80.0' in metrics
    assert 'vif_router_tenant_requests_total{model="m",status="429",tenant="search"} 1.0' in metrics


async def test_past_the_replicas_places_a_request_waits_at_the_router_and_counts_as_pending(
    start_replica: StartReplica, start_router: StartRouter, tmp_path: Path
) -> None:
    replica, served = await start_replica("a", events=asyncio.Queue())
    url, router = await start_router(
        [served.url], tenants_file=tenants_file(tmp_path), max_in_flight_per_replica=1, max_wait=WAIT
    )
    assert replica.events is not None
    stream = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        first = asyncio.create_task(client.post("/v1/chat/completions", json=stream, headers=SEARCH))
        await wait_until(lambda: len(replica.seen) == 1)
        second = asyncio.create_task(client.post("/v1/chat/completions", json=stream, headers=BATCH))
        await wait_until(lambda: router.fair.waiting == 1)
        pending = (await client.get("/metrics")).text
        assert len(replica.seen) == 1  # the second waits at the router, not in the replica
        for item in (b"data: [DONE]\n\n", None, b"data: [DONE]\n\n", None):
            replica.events.put_nowait(item)
        answers = await asyncio.gather(first, second)
        metrics = (await client.get("/metrics")).text
    assert [a.status_code for a in answers] == [200, 200]
    assert 'vif_router_pending_requests{model="m"} 1.0' in pending  # what KEDA scales up on
    assert 'vif_router_tenant_queue_seconds_count{model="m",tenant="batch"} 1.0' in metrics


async def test_listing_models_counts_against_no_limit(
    start_replica: StartReplica, start_router: StartRouter, tmp_path: Path
) -> None:
    _, served = await start_replica("a")
    url, _ = await start_router([served.url], tenants_file=tenants_file(tmp_path, requestsPerMinute=1))
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        listed = [(await client.get("/v1/models", headers=SEARCH)).status_code for _ in range(3)]
        completed = await client.post("/v1/completions", json={"prompt": "hi"}, headers=SEARCH)
        wrong_key = await client.get("/v1/models", headers={"Authorization": "Bearer sk-other"})
    assert listed == [200, 200, 200] and completed.status_code == 200
    assert wrong_key.status_code == 401  # but it still needs a tenant's key
