"""`/tokenize` and `/detokenize` on the fake engine (a token is a character): vLLM's shapes, the refusals, the API
key, the 503s, a large body on the worker thread, and responses that match the OpenAPI document."""

from __future__ import annotations

import threading

import httpx
import pytest

from helpers.conformance import check_against_document
from helpers.fake_engine import FakeEngine
from vif.runtime.app.factory import ServerSettings, create_app
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.engine.types import EngineInfo
from vif.runtime.protocols.responses import DetokenizeResponse, ErrorResponse, TokenizeResponse
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.serving.registry import serving_classes

from .conftest import MODEL

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
RENDERED = "<system>Be brief.<user>Hi"


def codes(text: str) -> list[int]:
    return [ord(c) for c in text]


async def post(client: httpx.AsyncClient, path: str, body: object, status: int = 200) -> dict:
    """POST, check the status and that the document and the response models describe the answer."""
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    check_against_document("POST", path, response, body)
    model = ErrorResponse if status >= 400 else {"/tokenize": TokenizeResponse, "/detokenize": DetokenizeResponse}[path]
    model.model_validate_json(response.content, strict=True)
    return response.json()


async def test_tokenize_a_prompt(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    answer = await post(client, "/tokenize", {"model": MODEL, "prompt": "Hello"})
    assert answer == {"count": 5, "max_model_len": 256, "tokens": codes("Hello"), "token_strs": None}
    with_strs = await post(client, "/tokenize", {"prompt": "Hi", "return_token_strs": True})
    assert with_strs["token_strs"] == ["H", "i"]


async def test_special_tokens_follow_vllm_defaults(make_client, engine: FakeEngine) -> None:
    """A prompt gets the tokenizer's special tokens unless asked not to; chat messages only if asked to."""
    engine.bos_token_id = 1
    client = await make_client()
    assert (await post(client, "/tokenize", {"prompt": "a"}))["tokens"] == [1, 97]
    assert (await post(client, "/tokenize", {"prompt": "a", "add_special_tokens": False}))["tokens"] == [97]
    assert (await post(client, "/tokenize", {"messages": MESSAGES}))["tokens"][0] != 1
    chat = await post(client, "/tokenize", {"messages": MESSAGES, "add_special_tokens": True})
    assert chat["tokens"][0] == 1


async def test_tokenize_chat_as_the_chat_route_renders_it(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    answer = await post(client, "/tokenize", {"messages": MESSAGES})
    assert answer["tokens"] == codes(RENDERED + "<assistant>")
    chat = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 1})
    assert chat.json()["usage"]["prompt_tokens"] == answer["count"]
    parts = [{"role": "user", "content": [{"type": "text", "text": "H"}, {"type": "text", "text": "i"}]}]
    assert (await post(client, "/tokenize", {"messages": parts}))["tokens"] == codes("<user>Hi<assistant>")
    bare = {"messages": MESSAGES, "add_generation_prompt": False, "continue_final_message": True}
    assert (await post(client, "/tokenize", bare))["tokens"] == codes(RENDERED)


async def test_detokenize_round_trips(make_client) -> None:
    client = await make_client()
    tokens = (await post(client, "/tokenize", {"prompt": "Grüße"}))["tokens"]
    assert await post(client, "/detokenize", {"model": MODEL, "tokens": tokens}) == {"prompt": "Grüße"}
    assert await post(client, "/detokenize", {"tokens": []}) == {"prompt": ""}


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/tokenize", {"prompt": "x", "nope": 1}, "nope", "extra_forbidden"),
        ("/tokenize", {"prompt": 1}, "prompt", "string_type"),
        ("/tokenize", {}, "prompt", "missing"),
        ("/tokenize", {"prompt": "x" * 257}, "prompt", "context_length_exceeded"),
        ("/tokenize", {"messages": [{"role": "user", "content": "x" * 257}]}, "messages", "context_length_exceeded"),
        ("/tokenize", {"messages": [{"role": "user", "content": "x"}] * 5000}, "messages", "too_long"),
        ("/tokenize", {"messages": []}, "messages", "too_short"),
        ("/tokenize", {"messages": MESSAGES, "continue_final_message": True}, "continue_final_message", "value_error"),
        ("/tokenize", {"messages": [{"role": "developer", "content": "x"}]}, None, "invalid_prompt"),
        ("/detokenize", {"tokens": [104, 0x110000]}, "tokens", "invalid_token"),
        ("/detokenize", {"tokens": [-1]}, "tokens[0]", "greater_than_equal"),
        ("/detokenize", {"tokens": [1] * 257}, "tokens", "too_long"),
        ("/detokenize", {"tokens": "hi"}, "tokens", "list_type"),
        ("/detokenize", {"prompt": "hi"}, "tokens", "missing"),
    ],
)
async def test_refusals_name_the_parameter(make_client, path: str, body: dict, param: str | None, code: str) -> None:
    client = await make_client()
    error = (await post(client, path, body, 400))["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


async def test_prompt_that_fills_the_context_exactly_is_tokenised(make_client) -> None:
    client = await make_client()
    assert (await post(client, "/tokenize", {"prompt": "x" * 256}))["count"] == 256
    assert (await post(client, "/detokenize", {"tokens": [120] * 256}))["prompt"] == "x" * 256


@pytest.mark.parametrize("path", ["/tokenize", "/detokenize"])
async def test_unknown_model_and_bad_json(make_client, path: str) -> None:
    client = await make_client()
    body = {"model": "other", "prompt": "x"} if path == "/tokenize" else {"model": "other", "tokens": [1]}
    error = (await post(client, path, body, 404))["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_found")
    response = await client.post(path, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


async def test_api_key_guards_both_routes(make_client) -> None:
    client = await make_client(ServerSettings(api_keys=("key",)))
    for path, body in (("/tokenize", {"prompt": "x"}), ("/detokenize", {"tokens": [120]})):
        assert (await post(client, path, body, 401))["error"]["code"] == "invalid_api_key"
        assert (await client.post(path, json=body, headers={"Authorization": "Bearer key"})).status_code == 200


async def test_bodies_are_tokenised_on_the_worker_thread(make_client, engine: FakeEngine) -> None:
    engine.info = EngineInfo(max_model_len=100_000, vocab_size=0x110000, max_num_seqs=8, max_token_chars=1)
    threads: list[str] = []
    encode = engine.encode

    def recording_encode(text: str, add_special_tokens: bool = True) -> list[int]:
        threads.append(threading.current_thread().name)
        return encode(text, add_special_tokens)

    engine.encode = recording_encode  # type: ignore[method-assign]
    client = await make_client()
    assert (await post(client, "/tokenize", {"prompt": "x" * 40_000}))["count"] == 40_000
    assert (await post(client, "/tokenize", {"prompt": "small"}))["count"] == 5
    assert len(threads) == 2 and all(name.startswith("vif-prepare") for name in threads)


async def test_unavailable_until_the_engine_is_up_and_after_it_dies(metrics: RuntimeMetrics, make_client) -> None:
    release = threading.Event()

    def load() -> FakeEngine:
        release.wait(10)
        return FakeEngine()

    app = create_app(ServedModel(MODEL), load, serving_classes("OpenAIServingChat"), metrics)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://vif") as client:
                loading = await post(client, "/tokenize", {"prompt": "x"}, 503)
                assert loading["error"]["code"] == "model_not_ready"
    finally:
        release.set()
    lifecycle = Lifecycle()
    client = await make_client(lifecycle=lifecycle)
    lifecycle.failed("engine core died")
    assert (await post(client, "/detokenize", {"tokens": [120]}, 503))["error"]["code"] == "engine_dead"
