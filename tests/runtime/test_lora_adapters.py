"""LoRA adapters served beside the base model, through the real app with a scripted engine (whose adapters answer
in upper case): the request's `model` picks the adapter, responses and metrics carry its name."""

from __future__ import annotations

import pytest
from httpx import ASGITransport, AsyncClient
from prometheus_client import CollectorRegistry

from helpers.conformance import check_against_document, check_against_models
from helpers.fake_engine import FakeEngine
from helpers.waits import eventually
from vif.runtime.app.factory import create_app
from vif.runtime.protocols.responses import ModelList
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.serving.registry import serving_classes

MODEL = "smollm2-135m-instruct"
SERVED = ServedModel(MODEL, adapters=("pirate", "org/poet:v2"))
CHAT = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 10}


@pytest.fixture
async def client(make_client):
    return await make_client(model=SERVED)


async def test_the_model_field_picks_the_adapter(client, engine: FakeEngine) -> None:
    assert engine.adapters_loaded
    for model, adapter, content in [
        ("pirate", "pirate", "PARIS IS THE CAPITAL."),
        ("org/poet:v2", "org/poet:v2", "PARIS IS THE CAPITAL."),
        (MODEL, None, "Paris is the capital."),
        (None, None, "Paris is the capital."),
    ]:
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": model})
        assert r.status_code == 200, r.text
        check_against_models("/v1/chat/completions", r)
        assert r.json()["model"] == (model or MODEL)
        assert r.json()["choices"][0]["message"]["content"] == content
        assert engine.adapters[-1] == adapter


async def test_streams_and_every_protocol_carry_the_adapters_name(client, engine: FakeEngine) -> None:
    for path in ("/v1/chat/completions", "/v1/completions"):
        body = {"prompt": "x"} if path == "/v1/completions" else CHAT
        r = await client.post(path, json={**body, "model": "pirate", "stream": True, "max_tokens": 3})
        chunks = check_against_models(path, r)
        assert chunks and all(c.model == "pirate" for c in chunks)  # type: ignore[attr-defined]
    r = await client.post("/generate", json={"prompt": "x", "model": "pirate", "max_tokens": 3})
    assert r.json()["model"] == "pirate" and r.json()["output"] == "PARIS IS THE"
    assert engine.adapters == ["pirate"] * 3


async def test_an_unknown_adapter_is_model_not_found(client, engine: FakeEngine) -> None:
    for model in ("sailor", "Pirate", ""):
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": model})
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "model_not_found"
    assert engine.requests == []


async def test_models_lists_the_base_then_each_adapter_with_its_parent(client) -> None:
    r = await client.get("/v1/models")
    check_against_document("GET", "/v1/models", r)
    cards = ModelList.model_validate_json(r.content, strict=True).data
    assert [(c.id, c.root, c.parent) for c in cards] == [
        (MODEL, MODEL, None),
        ("pirate", MODEL, MODEL),
        ("org/poet:v2", MODEL, MODEL),
    ]


async def test_metrics_are_labelled_with_the_served_name(client) -> None:
    await client.post("/v1/chat/completions", json={**CHAT, "model": "pirate"})
    await client.post("/v1/chat/completions", json=CHAT)
    await client.post("/v1/chat/completions", json={**CHAT, "model": "pirate", "temperature": 9})
    text = (await client.get("/metrics")).text
    assert 'vif_requests_total{model="pirate",protocol="chat",status="200"} 1.0' in text
    assert 'vif_completion_tokens_total{model="pirate",protocol="chat"} 4.0' in text
    assert 'vif_time_to_first_token_seconds_count{model="pirate",protocol="chat"} 1.0' in text
    assert f'vif_requests_total{{model="{MODEL}",protocol="chat",status="200"}} 1.0' in text
    # refused while being prepared: counted under the base model's name, the served name not being settled
    assert f'vif_requests_total{{model="{MODEL}",protocol="chat",status="400"}} 1.0' in text
    assert f'vif_requests_in_flight{{model="{MODEL}",protocol="chat"}} 0.0' in text


class FailingAdapters(FakeEngine):
    async def load_adapters(self) -> None:
        raise RuntimeError("LoRA rank 64 is greater than max_lora_rank 16")


async def test_an_adapter_that_fails_to_load_fails_start_up() -> None:
    engine = FailingAdapters()
    metrics = RuntimeMetrics(MODEL, CollectorRegistry())
    app = create_app(SERVED, lambda: engine, serving_classes("OpenAIServingChat"), metrics)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        # the engine is not left running for a replica that will exit
        await eventually(lambda: engine.shut_down, "the engine shut down after the failed adapter load")
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://vif") as client:
            r = await client.get("/health")
            assert r.status_code == 503
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 503 and r.json()["error"]["message"] == "The engine failed to start."
    finally:
        await lifespan.__aexit__(None, None, None)  # type: ignore[attr-defined]
