"""The request path of the three protocols, through the real app with a scripted engine."""

from __future__ import annotations

import orjson
import pytest

from helpers.fake_engine import FakeEngine
from vif.runtime.engine.types import LOWEST_LOGPROB, finite_logprob
from vif.runtime.serving.registry import serving_classes

CHAT = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}


def sse_payloads(body: str) -> list[dict]:
    events = [line[len("data: ") :] for line in body.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [orjson.loads(e) for e in events[:-1]]


async def test_chat_completion_shape(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "smollm2-135m-instruct", "max_tokens": 50})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris is the capital."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    prompt_len = len(engine.requests[0][0])
    assert body["usage"] == {"prompt_tokens": prompt_len, "completion_tokens": 4, "total_tokens": prompt_len + 4}


async def test_chat_passes_sampling_options_to_engine(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    request = {**CHAT, "temperature": 0.3, "top_p": 0.9, "max_completion_tokens": 7, "n": 2, "stop": "x", "seed": 5}
    request |= {"presence_penalty": 0.5, "frequency_penalty": -0.5, "logprobs": True, "top_logprobs": 3}
    r = await client.post("/chat/completions", json=request)
    assert r.status_code == 200
    options = engine.requests[0][1]
    assert (options.temperature, options.top_p, options.max_tokens, options.n) == (0.3, 0.9, 7, 2)
    assert (options.stop, options.seed, options.logprobs) == (("x",), 5, 3)
    assert (options.presence_penalty, options.frequency_penalty) == (0.5, -0.5)
    choice = r.json()["choices"][1]
    assert choice["index"] == 1
    first = choice["logprobs"]["content"][0]
    assert first["token"] == "Paris" and first["bytes"] == list(b"Paris") and len(first["top_logprobs"]) == 3


async def test_chat_defaults_fill_the_context(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    await client.post("/v1/chat/completions", json=CHAT)
    prompt, options, _ = engine.requests[0]
    assert options.max_tokens == engine.info.max_model_len - len(prompt)
    assert (options.temperature, options.top_p, options.n) == (1.0, 1.0, 1)


async def test_chat_stream_chunks_and_usage(make_client) -> None:
    client = await make_client()
    request = {**CHAT, "stream": True, "n": 2, "stream_options": {"include_usage": True}}
    r = await client.post("/v1/chat/completions", json=request)
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_payloads(r.text)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    by_index: dict[int, str] = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        if choice["index"] not in by_index:
            assert choice["delta"]["role"] == "assistant"
        by_index[choice["index"]] = by_index.get(choice["index"], "") + choice["delta"]["content"]
    assert by_index == {0: "Paris is the capital.", 1: "Paris is the capital."}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8


async def test_chat_accepts_content_parts(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    parts = [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]
    r = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]})
    assert r.status_code == 200
    assert "Hello, world" in engine.decode(engine.requests[0][0])


async def test_completions_several_prompts_index_choices(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    r = await client.post("/v1/completions", json={"prompt": ["one", "two"], "n": 2, "max_tokens": 2})
    body = r.json()
    assert body["object"] == "text_completion"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert {c["text"] for c in body["choices"]} == {"Paris is"}
    assert [engine.decode(p) for p, _, _ in engine.requests] == ["one", "two"]
    # each prompt's options prepared once, and generated from what was prepared (the fake refuses anything else)
    assert engine.prepared == [options for _, options, _ in engine.requests]
    assert body["usage"]["prompt_tokens"] == 6 and body["usage"]["completion_tokens"] == 8


async def test_completions_token_prompt_echo_and_logprobs(make_client) -> None:
    client = await make_client()
    r = await client.post("/completions", json={"prompt": [72, 105], "echo": True, "logprobs": 1, "max_tokens": 1})
    choice = r.json()["choices"][0]
    assert choice["text"] == "HiParis"
    assert choice["logprobs"]["tokens"] == ["H", "i", "Paris"]
    assert choice["logprobs"]["token_logprobs"] == [None, -2.0, -0.5]
    assert choice["logprobs"]["text_offset"] == [0, 1, 2]
    assert "".join(choice["logprobs"]["tokens"]) == choice["text"]


async def test_completions_stream(make_client) -> None:
    client = await make_client()
    r = await client.post("/v1/completions", json={"prompt": "Say", "stream": True, "echo": True, "max_tokens": 2})
    chunks = sse_payloads(r.text)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "SayParis is"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_generate_builds_history_messages(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    request = {
        "model": "smollm2-135m-instruct",
        "prompt": "And Germany?",
        "system_info": "Be brief.",
        "history_input": ["Capital of France?"],
        "history_output": ["Paris."],
        "max_tokens": 30,
    }
    r = await client.post("/generate", json=request)
    body = r.json()
    assert body["object"] == "generate" and body["output"] == "Paris is the capital."
    assert body["finish_reason"] == "stop" and body["id"].startswith("gen-")
    rendered = engine.decode(engine.requests[0][0])
    assert rendered == "<system>Be brief.<user>Capital of France?<assistant>Paris.<user>And Germany?<assistant>"


async def test_generate_stream(make_client) -> None:
    client = await make_client()
    r = await client.post("/generate", json={"prompt": "Hi", "stream": True})
    chunks = sse_payloads(r.text)
    assert "".join(c["output"] for c in chunks) == "Paris is the capital."
    assert set(chunks[0]) == {"id", "output", "finish_reason"}
    assert chunks[-1]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/v1/chat/completions", {"messages": []}, "messages", "too_short"),
        ("/v1/chat/completions", {**CHAT, "temperature": 2.5}, "temperature", "less_than_equal"),
        ("/v1/chat/completions", {**CHAT, "functions": []}, "functions", "extra_forbidden"),
        ("/v1/chat/completions", {**CHAT, "tool_choice": "required"}, "tool_choice", "value_error"),
        ("/v1/chat/completions", {**CHAT, "logit_bias": {"x": 1}}, "logit_bias.x", "string_pattern_mismatch"),
        ("/v1/chat/completions", {**CHAT, "top_logprobs": 2}, "top_logprobs", "value_error"),
        ("/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True}}, "stream_options", "value_error"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "literal_error",
        ),
        ("/v1/completions", {"prompt": "x", "n": 0}, "n", "greater_than_equal"),
        ("/v1/completions", {}, "prompt", "missing"),
        ("/generate", {"prompt": "x", "history_input": ["a"]}, "history_output", "value_error"),
        (
            "/generate",
            {"prompt": "x", "history_input": ["a"], "history_output": ["b", "c"]},
            "history_output",
            "value_error",
        ),
    ],
)
async def test_validation_errors_name_the_param(make_client, path: str, body: dict, param: str, code: str) -> None:
    client = await make_client()
    r = await client.post(path, json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert param.split("[")[0] in error["message"]


async def test_unknown_model_is_404(make_client) -> None:
    client = await make_client()
    r = await client.post("/generate", json={"model": "gpt-9", "prompt": "x"})
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "message": "The model `gpt-9` does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


async def test_invalid_json_body(make_client) -> None:
    client = await make_client()
    r = await client.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


async def test_context_length_is_checked(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    r = await client.post("/v1/completions", json={"prompt": "x" * 300})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = await client.post("/v1/completions", json={"prompt": "abc", "max_tokens": 254})
    assert r.json()["error"]["param"] == "max_tokens"
    assert engine.requests == []


async def test_engine_failure_is_sanitised(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    engine.fail_with = RuntimeError("boom at /secret/path/engine.py line 12")
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 500
    assert r.json() == {
        "error": {"message": "Internal server error", "type": "internal_error", "param": None, "code": None}
    }
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 500 and "secret" not in r.text  # failed before the first chunk: still an HTTP error
    engine.fail_after_steps = 2
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 200
    *chunks, error = sse_payloads(r.text)
    assert len(chunks) == 2 and error["error"]["type"] == "internal_error" and "secret" not in r.text
    engine.fail_with = None
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # the process stays up


async def test_plugin_class_replaces_its_protocol(make_client, engine: FakeEngine) -> None:
    from example_plugin import ShoutingServingChat

    classes = serving_classes("example_plugin:ShoutingServingChat", ["example_plugin:ShoutingServingChat"])
    assert classes["chat"] is ShoutingServingChat
    client = await make_client(classes=classes)
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.json()["choices"][0]["message"]["content"] == "Paris is the capital."
    assert "WHAT IS THE CAPITAL OF FRANCE?" in engine.decode(engine.requests[0][0])
    r = await client.post("/v1/chat/completions", json={"model": "other", **CHAT})
    assert r.status_code == 404 and r.json()["error"]["message"].startswith("[shouting-chat]")


async def test_leaving_a_stream_early_aborts_its_engine_requests(engine: FakeEngine, metrics) -> None:
    """What a client disconnect does to a stream: the response iterator is closed mid-way."""
    from contextlib import aclosing

    from vif.runtime.serving.completion import OpenAIServingCompletion
    from vif.runtime.serving.context import ServedModel

    engine.delay = 0.001  # steps arrive over time, as from a real engine
    serving = OpenAIServingCompletion(engine, ServedModel("m"), metrics)
    ctx = serving.prepare(orjson.dumps({"prompt": ["a", "b"], "max_tokens": 50, "ignore_eos": True}), "x")
    async with aclosing(serving._steps(ctx)) as steps:
        async for _ in steps:
            break
    assert sorted(r.rsplit("-", 2)[1] for r in engine.aborted) == ["0", "1"]
    assert len(engine.requests) == 2


async def test_input_the_engine_refuses_is_a_400(make_client) -> None:
    client = await make_client()
    r = await client.post("/v1/chat/completions", json={"messages": [{"role": "developer", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_prompt"
    assert "developer role" in r.json()["error"]["message"]
    r = await client.post("/v1/completions", json={"prompt": [5, 2_000_000]})
    assert r.status_code == 400 and "out of the vocabulary" in r.json()["error"]["message"]
    r = await client.post("/v1/completions", json={"prompt": [5, 2_000_000], "stream": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"  # refused before the stream starts


def test_a_logprob_json_cannot_carry_is_clamped_as_vllm_clamps_it() -> None:
    assert finite_logprob(float("-inf")) == finite_logprob(float("nan")) == LOWEST_LOGPROB == -9999.0
    assert finite_logprob(-0.5) == -0.5
