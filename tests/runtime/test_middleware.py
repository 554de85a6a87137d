"""API keys, the concurrency limit, the body size limit, request ids and metrics, through the real app."""

from __future__ import annotations

import asyncio
import logging

from helpers.fake_engine import FakeEngine
from vif.runtime.app.factory import ServerSettings
from vif.runtime.serving.metrics import RuntimeMetrics

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


async def test_api_keys_guard_inference_but_not_probes(make_client) -> None:
    client = await make_client(ServerSettings(api_keys=("key-one", "key-two")))
    missing = await client.post("/v1/chat/completions", json=CHAT)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer key-three"})
    assert wrong.status_code == 401
    for key in ("key-one", "key-two"):
        ok = await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    assert (await client.get("/v1/models")).status_code == 401
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert (await client.get(path)).status_code == 200


async def test_the_access_log_names_the_keys_tenant_never_the_key(make_client, caplog) -> None:
    client = await make_client(ServerSettings(api_keys=("key-one",)))
    with caplog.at_level(logging.INFO, logger="vif"):
        await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer key-one"})
    (line,) = [r for r in caplog.records if r.getMessage().startswith("POST /v1/chat/completions")]
    assert line.getMessage().endswith(" tenant=default") and line.tenant == "default"
    assert "key-one" not in caplog.text


async def test_concurrency_limit_answers_429_at_once(make_client, engine: FakeEngine) -> None:
    engine.delay = 0.05
    client = await make_client(ServerSettings(limit_concurrency=1))
    slow = asyncio.create_task(client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 10, "ignore_eos": True}))
    while not engine.requests:
        await asyncio.sleep(0.005)
    refused = await client.post("/generate", json={"prompt": "x"})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert (await client.get("/health")).status_code == 200  # probes are not limited
    assert (await slow).status_code == 200
    assert (await client.post("/generate", json={"prompt": "x"})).status_code == 200  # the slot is free again


async def test_body_size_limit(make_client) -> None:
    client = await make_client(ServerSettings(max_body_bytes=1000))
    r = await client.post("/v1/completions", json={"prompt": "x" * 2000})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"

    async def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(30):
            yield b"x" * 100

    r = await client.post("/v1/completions", content=chunks())
    assert r.status_code == 413


async def test_request_id_is_echoed_or_made(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    r = await client.post("/generate", json={"prompt": "x"}, headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r.json()["id"] == "gen-abc-123"
    assert engine.requests[0][2].startswith("gen-abc-123-0-")
    await client.post("/generate", json={"prompt": "x"}, headers={"X-Request-Id": "abc-123"})
    assert engine.requests[1][2] != engine.requests[0][2]  # a reused id never makes two engine requests share one
    made = (await client.get("/health")).headers["x-request-id"]
    assert len(made) == 32


async def test_metrics_count_requests_errors_tokens_and_ttft(make_client, metrics: RuntimeMetrics) -> None:
    client = await make_client()
    await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3})
    await client.post("/v1/chat/completions", json={**CHAT, "stream": True, "max_tokens": 2})
    await client.post("/v1/completions", json={"prompt": "x", "temperature": 9})
    text = (await client.get("/metrics")).text
    model = 'model="smollm2-135m-instruct"'
    assert f'vif_requests_total{{{model},protocol="chat",status="200"}} 2.0' in text
    assert f'vif_requests_total{{{model},protocol="completion",status="400"}} 1.0' in text
    assert f'vif_errors_total{{{model},protocol="completion",type="invalid_request_error"}} 1.0' in text
    assert f'vif_completion_tokens_total{{{model},protocol="chat"}} 5.0' in text
    assert f'vif_time_to_first_token_seconds_count{{{model},protocol="chat"}} 2.0' in text
    assert f'vif_request_duration_seconds_count{{{model},protocol="chat"}} 2.0' in text
    assert f'vif_requests_in_flight{{{model},protocol="chat"}} 0.0' in text


async def test_errors_answered_before_the_endpoint_are_counted_by_their_type(make_client) -> None:
    """The type travels with the request from where the error is made (middleware, handlers, endpoints)."""
    client = await make_client(ServerSettings(api_keys=("k",), max_body_bytes=200))
    await client.post("/v1/chat/completions", json=CHAT)  # no key
    await client.post("/v1/chat/completions", json={**CHAT, "user": "x" * 300}, headers={"Authorization": "Bearer k"})
    await client.post("/v1/chat/completions", json={**CHAT, "n": 0}, headers={"Authorization": "Bearer k"})
    text = (await client.get("/metrics")).text
    counted = {
        line.split('type="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vif_errors_total{")
    }
    assert counted == {"authentication_error": 1.0, "invalid_request_error": 2.0}


async def test_an_unhealthy_engine_fails_both_probes_for_good(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    engine.healthy = False
    assert (await client.get("/health")).status_code == 503
    assert (await client.get("/ready")).status_code == 503
    engine.healthy = True  # a dead vLLM engine does not come back: the replica stays failed and exits
    assert (await client.get("/ready")).status_code == 503
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503 and r.json()["error"]["code"] == "engine_dead"


async def test_unknown_route_and_method_use_the_error_shape(make_client) -> None:
    client = await make_client()
    r = await client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = await client.get("/v1/chat/completions")
    assert r.status_code == 405 and set(r.json()["error"]) == {"message", "type", "param", "code"}


async def test_request_ids_that_are_not_plain_tokens_are_replaced(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    for bad in ("a b", "x" * 65, "id\x1b[31m", "naïve", ""):
        r = await client.post("/generate", json={"prompt": "x"}, headers={"X-Request-Id": bad.encode()})
        assert r.headers["x-request-id"] != bad and len(r.headers["x-request-id"]) == 32
    ok = "trace-1.2:3_A"
    r = await client.post("/generate", json={"prompt": "x"}, headers={"X-Request-Id": ok})
    assert r.headers["x-request-id"] == ok


def test_logged_paths_have_control_characters_escaped() -> None:
    from vif.runtime.app.middleware import printable

    assert printable("/v1/models") == "/v1/models"
    assert printable("/x\n2026 INFO forged line\x1b[0m") == "/x\\n2026 INFO forged line\\x1b[0m"
