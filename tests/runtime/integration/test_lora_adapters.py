"""A LoRA adapter made with peft from the default model, served on the real engine beside the base model.

The session's second runtime (`extras_url`), its model_config.json listing the adapter, serves it; the shared
server (no adapters, LoRA off) is the reference for the base model's answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from helpers.conformance import check_against_document, sse_data
from helpers.runtime_process import MODEL

from .conftest import ADAPTER, Server

GREEDY = {"temperature": 0, "max_tokens": 24}
# An open question: a factual one ("the capital of France?") can be answered alike through a small random adapter.
CHAT = {"messages": [{"role": "user", "content": "Tell me about the sea."}], **GREEDY}
COMPLETION = {"prompt": "The capital of France is", **GREEDY}


@pytest.fixture
def lora(extras_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=extras_url, timeout=120) as client:
        yield client


def answer(client: httpx.Client, model: str, body: dict = CHAT, path: str = "/v1/chat/completions") -> dict:
    r = client.post(path, json={**body, "model": model})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == model
    return r.json()


def test_the_adapter_changes_greedy_answers_and_the_base_is_unchanged(lora: httpx.Client, http: httpx.Client) -> None:
    reference = answer(http, MODEL)["choices"][0]["message"]["content"]
    base = answer(lora, MODEL)["choices"][0]["message"]["content"]
    adapted = answer(lora, ADAPTER)["choices"][0]["message"]["content"]
    assert base == reference  # LoRA switched on for the engine does not touch requests without an adapter
    assert adapted != base, adapted
    assert answer(lora, MODEL)["choices"][0]["message"]["content"] == base  # nor after an adapter's request
    completions = [answer(lora, m, COMPLETION, "/v1/completions")["choices"][0]["text"] for m in (MODEL, ADAPTER)]
    assert completions[0] != completions[1], completions


def test_a_stream_through_the_adapter_matches_its_answer(lora: httpx.Client) -> None:
    r = lora.post("/v1/chat/completions", json={**CHAT, "model": ADAPTER, "stream": True})
    assert r.status_code == 200, r.text
    chunks = [orjson.loads(data) for data in sse_data(r.text)[:-1]]
    assert chunks and all(c["model"] == ADAPTER for c in chunks)
    streamed = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert streamed == answer(lora, ADAPTER)["choices"][0]["message"]["content"]


def test_an_unknown_adapter_is_model_not_found(lora: httpx.Client) -> None:
    r = lora.post("/v1/chat/completions", json={**CHAT, "model": "smollm2-lora-missing"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_models_lists_the_base_and_the_adapter_with_its_parent(lora: httpx.Client) -> None:
    r = lora.get("/v1/models")
    check_against_document("GET", "/v1/models", r)
    cards = [(c["id"], c["root"], c["parent"], c["max_model_len"]) for c in r.json()["data"]]
    assert cards == [(MODEL, MODEL, None, 2048), (ADAPTER, MODEL, MODEL, 2048)]


def test_metrics_carry_the_adapters_name(lora: httpx.Client) -> None:
    answer(lora, ADAPTER, {**CHAT, "max_tokens": 2})
    text = lora.get("/metrics").text
    assert f'vif_requests_total{{model="{ADAPTER}",protocol="chat",status="200"}}' in text
    assert f'vif_completion_tokens_total{{model="{ADAPTER}",protocol="chat"}}' in text


def test_the_shared_server_has_no_adapter(server: Server, http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json={**CHAT, "model": ADAPTER})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert [c["id"] for c in http.get("/v1/models").json()["data"]] == [MODEL]
