"""Tool calling on the real engine through the official `openai` SDK: a named call and `required` give
arguments that follow the function's schema on SmolLM2 (whose template knows nothing of tools), streamed deltas
reassemble to the same call, and a whole loop (call, result, answer) round-trips."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from .conftest import MODEL, Server

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"type": "string", "enum": ["C", "F"]}},
    "required": ["city", "unit"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)


def test_a_named_call_follows_the_schema_streamed_or_not(client: openai.OpenAI) -> None:
    args = {"model": MODEL, "messages": ASK, "tools": TOOLS, "tool_choice": NAMED, "temperature": 0, "max_tokens": 80}
    reply = client.chat.completions.create(**args)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)

    streamed: dict[int, dict[str, str]] = {}
    for chunk in client.chat.completions.create(**args, stream=True):
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = streamed.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
    assert [(c["name"], c["arguments"]) for c in streamed.values()] == [("get_weather", call.function.arguments)]
    assert streamed[0]["id"].startswith("call_")


def test_required_calls_one_of_the_tools_with_valid_arguments(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, max_tokens=120
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls
    schema = {"get_weather": WEATHER, "get_time": TOOLS[1]["function"]["parameters"]}[call.function.name]
    jsonschema.validate(json.loads(call.function.arguments), schema)


def test_a_tool_loop_round_trips(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice=NAMED, temperature=0, max_tokens=80
    )
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees C and sunny"},
    ]
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, temperature=0, max_tokens=40)
    choice = final.choices[0]
    assert choice.finish_reason in {"stop", "length"} and not choice.message.tool_calls
    assert choice.message.content
    assert final.usage.prompt_tokens > first.usage.prompt_tokens  # the call and its result were in the prompt


def test_auto_reads_calls_with_the_models_parser(extras_url: str) -> None:
    """`auto` on a runtime whose config names vLLM's hermes parser: the answer is held to the hermes format
    with a regex (a 135M model does not call tools on its own reliably), and the parser's calls come back."""
    hermes = (
        r'Checking\. <tool_call>\{"name": "get_weather", "arguments": \{"city": "Paris", "unit": "C"\}\}</tool_call>'
    )
    client = openai.OpenAI(base_url=f"{extras_url}/v1", api_key="unused", max_retries=0)
    args = {"model": MODEL, "messages": ASK, "tools": TOOLS, "max_tokens": 200}
    reply = client.chat.completions.create(**args, extra_body={"structured_outputs": {"regex": hermes}})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content == "Checking. "
    [call] = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris", "unit": "C"})

    stream = client.chat.completions.create(**args, stream=True, extra_body={"structured_outputs": {"regex": hermes}})
    deltas = [chunk.choices[0] for chunk in stream]
    assert deltas[-1].finish_reason == "tool_calls"
    [streamed] = deltas[-1].delta.tool_calls
    assert (streamed.function.name, streamed.function.arguments) == ("get_weather", call.function.arguments)

    plain = client.chat.completions.create(**args, temperature=0)  # no call in the answer: plain text
    assert plain.choices[0].message.content and not plain.choices[0].message.tool_calls
