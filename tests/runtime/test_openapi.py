"""`/openapi.json` is generated from the request and response models, is valid OpenAPI 3.1, and describes what
the app really answers: every response below, streamed or not, must match both the document and the models."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import jsonschema
import pytest
import schemathesis

from helpers.conformance import check_against_document, check_inference_response, document
from helpers.fake_engine import FakeEngine
from vif.runtime.app.factory import ServerSettings, create_app
from vif.runtime.app.openapi import (
    INFERENCE_ERRORS,
    INFERENCE_ROUTES,
    TOKENIZER_ERRORS,
    TOKENIZER_ROUTES,
    build_openapi,
)
from vif.runtime.protocols.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    ErrorResponse,
    GenerateResponse,
)
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.serving.registry import serving_classes

README = Path(__file__).resolve().parents[2] / "README.md"

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
GENERATE = "/generate"
MESSAGES = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
USAGE = {"stream": True, "stream_options": {"include_usage": True}}

# (path, body): every response shape the serving layer produces, with logprobs, echo, n and usage variants.
REQUESTS = [
    (CHAT, MESSAGES),
    (CHAT, {**MESSAGES, "n": 2, "logprobs": True, "top_logprobs": 2, "max_completion_tokens": 2}),
    (CHAT, {**MESSAGES, "logprobs": True}),
    (CHAT, {**MESSAGES, "stream": True}),
    (CHAT, {**MESSAGES, **USAGE, "n": 2, "logprobs": True, "top_logprobs": 3}),
    (CHAT, {**MESSAGES, "stream": True, "stream_options": {"include_usage": False}, "max_tokens": 1}),
    (COMPLETIONS, {"prompt": "Say"}),
    (COMPLETIONS, {"prompt": "Say", "logprobs": 2, "max_tokens": 3}),
    (COMPLETIONS, {"prompt": "Say", "echo": True, "logprobs": 0}),
    (COMPLETIONS, {"prompt": [[83, 97], [104, 105]], "n": 2, "echo": True}),
    (COMPLETIONS, {"prompt": ["a", "b"], "stream": True}),
    (COMPLETIONS, {"prompt": "Say", **USAGE, "echo": True, "logprobs": 2, "n": 2}),
    (GENERATE, {"prompt": "hi", "system_info": "Be brief.", "history_input": ["a"], "history_output": ["b"]}),
    (GENERATE, {"prompt": "hi", "max_tokens": 2}),
    (GENERATE, {"prompt": "hi", "stream": True}),
    # errors: invalid body, unknown model, a prompt the template refuses, one too long for the context
    (CHAT, {"messages": []}),
    (CHAT, {**MESSAGES, "model": "nope"}),
    (CHAT, {"messages": [{"role": "developer", "content": "x"}]}),
    (COMPLETIONS, {"prompt": "x" * 300}),
    (GENERATE, {"prompt": "hi", "max_tokens": 10_000, "stream": True}),
]


def schema_for(spec: dict, path: str) -> dict:
    ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[-1]
    return {**spec["components"]["schemas"][name], "components": spec["components"]}


async def test_served_document(make_client) -> None:
    client = await make_client()
    spec = (await client.get("/openapi.json")).json()
    assert spec == build_openapi(spec["info"]["version"])
    assert {"/v1/chat/completions", "/v1/completions", "/generate", "/health", "/ready", "/metrics"} <= set(
        spec["paths"]
    )


def test_document_is_valid_openapi_3_1() -> None:
    spec = build_openapi("test")
    assert spec["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(spec).validate()  # against the OpenAPI 3.1 meta-schema
    operations = [result.ok().label for result in document().get_all_operations()]
    assert len(operations) == len(spec["paths"]) == 10


def test_every_inference_route_documents_its_responses() -> None:
    spec = build_openapi("test")
    for route in INFERENCE_ROUTES:
        responses = spec["paths"][route.path]["post"]["responses"]
        assert set(responses) == {"200", *map(str, INFERENCE_ERRORS)}
        ok = responses["200"]["content"]
        assert ok["application/json"]["schema"]["$ref"].endswith(f"/{route.response.__name__}")
        event = ok["text/event-stream"]["schema"]["properties"]["data"]["anyOf"][1]["contentSchema"]
        assert event["anyOf"][0]["$ref"].endswith(f"/{route.chunk.__name__}")
        for status in INFERENCE_ERRORS:
            assert responses[str(status)]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


def test_every_tokenizer_route_documents_its_responses() -> None:
    spec = build_openapi("test")
    for route in TOKENIZER_ROUTES:
        responses = spec["paths"][route.path]["post"]["responses"]
        assert set(responses) == {"200", *map(str, TOKENIZER_ERRORS)} and "429" not in responses
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{route.response.__name__}")
    tokenize = schema_for(spec, "/tokenize")
    jsonschema.validate({"prompt": "Hi", "add_special_tokens": False}, tokenize)
    jsonschema.validate({"messages": [{"role": "user", "content": "Hi"}], "return_token_strs": True}, tokenize)
    for bad in ({"prompt": "Hi", "messages": []}, {"prompt": "Hi", "add_generation_prompt": True}, {}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, tokenize)


def test_seed_bodies_validate_and_bad_ones_do_not() -> None:
    spec = build_openapi("test")
    generate = schema_for(spec, "/generate")
    good = {"model": "m", "prompt": "p", "system_info": "s", "history_input": ["a"], "history_output": ["b"]}
    jsonschema.validate(good, generate)
    for bad in ({"prompt": 1}, {"prompt": "p", "unknown": True}, {"prompt": "p", "temperature": 3}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, generate)
    chat = schema_for(spec, "/v1/chat/completions")
    jsonschema.validate({"model": "m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 100}, chat)


@pytest.mark.parametrize(("path", "body"), REQUESTS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(REQUESTS)])
async def test_real_responses_match_document_and_models(make_client, path: str, body: dict) -> None:
    client = await make_client()
    response = await client.post(path, json=body)
    assert response.status_code < 500, response.text
    check_inference_response(path, response, body)


async def test_response_variants_are_the_expected_models(make_client) -> None:
    """The cases above reach the shapes they are meant to: logprobs, echo, the usage chunk, errors."""
    client = await make_client()

    async def parsed(path: str, body: dict) -> list:
        return check_inference_response(path, await client.post(path, json=body), body)

    (chat,) = await parsed(CHAT, {**MESSAGES, "n": 2, "logprobs": True, "top_logprobs": 2})
    assert isinstance(chat, ChatCompletion) and chat.choices[1].logprobs is not None
    assert len(chat.choices[1].logprobs.content[0].top_logprobs) == 2
    *chunks, usage = await parsed(CHAT, {**MESSAGES, **USAGE, "logprobs": True})
    assert all(isinstance(c, ChatCompletionChunk) and c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].logprobs is not None
    assert usage.choices == [] and usage.usage is not None
    (echo,) = await parsed(COMPLETIONS, {"prompt": "Say", "echo": True, "logprobs": 1})
    assert isinstance(echo, Completion) and echo.choices[0].text.startswith("Say")
    assert echo.choices[0].logprobs is not None and echo.choices[0].logprobs.token_logprobs[0] is None
    streamed = await parsed(COMPLETIONS, {"prompt": "Say", **USAGE})
    assert all(isinstance(c, CompletionChunk) for c in streamed) and streamed[-1].usage is not None
    (generated,) = await parsed(GENERATE, {"prompt": "hi", "max_tokens": 2})
    assert isinstance(generated, GenerateResponse) and generated.finish_reason == "length"
    (error,) = await parsed(CHAT, {**MESSAGES, "model": "nope"})
    assert isinstance(error, ErrorResponse) and error.error.code == "model_not_found"


async def test_get_routes_match_document(make_client) -> None:
    client = await make_client()
    for path in ("/v1/models", "/health", "/ready", "/metrics", "/openapi.json"):
        response = await client.get(path)
        assert response.status_code == 200, path
        check_against_document("GET", path, response)


async def test_auth_and_size_errors_match_document(make_client) -> None:
    client = await make_client(ServerSettings(api_keys=("key",), max_body_bytes=2048))
    for path in (CHAT, COMPLETIONS, GENERATE):
        unauthorised = await client.post(path, json={"prompt": "hi"})
        assert unauthorised.status_code == 401
        check_inference_response(path, unauthorised)
        too_large = await client.post(path, json={"prompt": "x" * 4096}, headers={"Authorization": "Bearer key"})
        assert too_large.status_code == 413
        check_inference_response(path, too_large)
    models = await client.get("/v1/models")
    assert models.status_code == 401
    check_against_document("GET", "/v1/models", models)


async def test_loading_and_failed_engine_match_document(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    engine.healthy = False
    for path in ("/health", "/ready"):
        response = await client.get(path)
        assert response.status_code == 503
        check_against_document("GET", path, response)


async def test_busy_server_answer_matches_document(make_client, engine: FakeEngine) -> None:
    engine.delay = 0.02
    client = await make_client(ServerSettings(limit_concurrency=1))
    answers = await asyncio.gather(*(client.post(GENERATE, json={"prompt": "hi"}) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [200, 429]
    for answer in answers:
        check_inference_response(GENERATE, answer)


async def test_answers_while_loading_match_document(metrics: RuntimeMetrics) -> None:
    release = threading.Event()

    def load() -> FakeEngine:
        release.wait(10)
        return FakeEngine()

    app = create_app(ServedModel("m"), load, serving_classes("OpenAIServingChat"), metrics)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://vif") as client:
                for path, body in ((CHAT, MESSAGES), (COMPLETIONS, {"prompt": "hi"}), (GENERATE, {"prompt": "hi"})):
                    response = await client.post(path, json=body)
                    assert response.status_code == 503
                    check_inference_response(path, response, body)
                ready = await client.get("/ready")
                assert ready.status_code == 503
                check_against_document("GET", "/ready", ready)
    finally:
        release.set()


def test_the_readme_lists_every_route(metrics: RuntimeMetrics) -> None:
    app = create_app(ServedModel("m"), FakeEngine, serving_classes("OpenAIServingChat"), metrics)
    paths = {route.path for route in app.routes if route.path.startswith("/")}  # type: ignore[attr-defined]
    listed = README.read_text().split("Endpoints:", 1)[1].split("\n\n", 1)[0]
    assert len(paths) > 10 and not {p for p in paths if f"`{p}`" not in listed and f" {p}`" not in listed}
