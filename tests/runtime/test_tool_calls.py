"""Tool calling on the chat route, through the real app with a scripted engine: the constraint a tool choice
puts on the engine, the calls read back from its answer, streamed and not, and the messages of a tool loop."""

from __future__ import annotations

import orjson
import pytest

from helpers.fake_engine import FakeEngine
from vif.runtime.engine.types import ParsedToolCalls, StructuredOutput
from vif.runtime.protocols.chat import ChatMessage
from vif.runtime.protocols.responses import ChatCompletion, ChatCompletionChunk
from vif.runtime.protocols.tools import ChatTool
from vif.runtime.serving.tools import calls_schema

WEATHER_ARGS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_ARGS}},
    {"type": "function", "function": {"name": "get_time"}},
]
FUNCTIONS = [ChatTool.model_validate(t).function for t in TOOLS]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
ASK = {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": TOOLS}


def events(body: str) -> list[dict]:
    data = [line[len("data: ") :] for line in body.split("\n\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [orjson.loads(e) for e in data[:-1]]


async def test_a_named_tool_constrains_the_answer_to_its_arguments(make_client, engine: FakeEngine) -> None:
    engine.reply = '{"city": "Paris"}'
    client = await make_client()
    r = await client.post("/v1/chat/completions", json={**ASK, "tool_choice": NAMED})
    assert r.status_code == 200, r.text
    assert engine.requests[0][1].structured == StructuredOutput("json", WEATHER_ARGS)
    choice = ChatCompletion.model_validate(r.json()).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')
    assert call.id.startswith("call_")


async def test_a_streamed_named_call_reassembles_from_its_deltas(make_client, engine: FakeEngine) -> None:
    engine.reply = '{"city": "Paris"}'
    client = await make_client()
    r = await client.post("/v1/chat/completions", json={**ASK, "tool_choice": NAMED, "stream": True})
    chunks = [ChatCompletionChunk.model_validate(e) for e in events(r.text)]
    deltas = [c.choices[0].delta for c in chunks]
    assert deltas[0].role == "assistant"
    calls = [call for d in deltas for call in d.tool_calls or []]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert all(c.index == 0 and c.id is None for c in calls[1:])
    assert "".join(c.function.arguments for c in calls) == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("parallel", [True, False])
async def test_required_constrains_the_answer_to_calls_of_the_tools(
    make_client, engine: FakeEngine, parallel: bool
) -> None:
    engine.reply = '[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "get_time", "parameters": {}}]'
    client = await make_client()
    body = {**ASK, "tool_choice": "required", "parallel_tool_calls": parallel}
    r = await client.post("/v1/chat/completions", json=body)
    schema = engine.requests[0][1].structured
    assert schema is not None and schema.value == calls_schema(FUNCTIONS, parallel)
    assert ("maxItems" in schema.value) is not parallel
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = [(c["function"]["name"], orjson.loads(c["function"]["arguments"])) for c in choice["message"]["tool_calls"]]
    assert calls == [("get_weather", {"city": "Paris"}), ("get_time", {})]


async def test_streamed_required_calls_come_whole_at_the_end(make_client, engine: FakeEngine) -> None:
    engine.reply = '[{"name": "get_time", "parameters": {}}]'
    client = await make_client()
    r = await client.post("/v1/chat/completions", json={**ASK, "tool_choice": "required", "stream": True})
    chunks = [ChatCompletionChunk.model_validate(e) for e in events(r.text)]
    assert chunks[0].choices[0].delta.role == "assistant"
    [last] = chunks[-1].choices
    assert last.finish_reason == "tool_calls"
    assert [(c.index, c.function.name, c.function.arguments) for c in last.delta.tool_calls or []] == [
        (0, "get_time", "{}")
    ]


async def test_an_answer_that_is_not_calls_comes_back_as_text(make_client, engine: FakeEngine) -> None:
    engine.reply = "no calls here"
    client = await make_client()
    r = await client.post("/v1/chat/completions", json={**ASK, "tool_choice": "required", "max_tokens": 2})
    choice = r.json()["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "no calls"}
    assert choice["finish_reason"] == "length"


async def test_auto_and_none_leave_the_answer_free(make_client, engine: FakeEngine) -> None:
    client = await make_client()
    for choice in ("auto", "none", None):
        body = {**ASK} if choice is None else {**ASK, "tool_choice": choice}
        r = await client.post("/v1/chat/completions", json=body)
        assert r.json()["choices"][0]["message"] == {"role": "assistant", "content": "Paris is the capital."}
    assert all(options.structured is None for _, options, _ in engine.requests)


async def test_a_tool_loop_renders_calls_and_results(make_client, engine: FakeEngine) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]
    client = await make_client()
    r = await client.post("/v1/chat/completions", json={"messages": messages, "tools": TOOLS})
    assert r.status_code == 200
    assert "<tool>18 C" in engine.decode(engine.requests[0][0])
    rendered = ChatMessage.model_validate(messages[1]).for_template()
    assert rendered["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**ASK, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({**ASK, "tool_choice": NAMED, "response_format": {"type": "json_object"}}, "tool_choice"),
        ({"messages": [{"role": "tool", "content": "18 C"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages[0]"),
        ({**ASK, "tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
    ],
)
async def test_tool_mistakes_are_400s_naming_the_field(make_client, body: dict, param: str) -> None:
    client = await make_client()
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


class BracketParser:
    """A stand-in for a model family's parser: `<call>name {args}</call>` anywhere in the answer."""

    def parse(self, text: str, tools) -> ParsedToolCalls:
        if "<call>" not in text:
            return ParsedToolCalls(text, ())
        before, _, rest = text.partition("<call>")
        name, _, arguments = rest.removesuffix("</call>").partition(" ")
        return ParsedToolCalls(before.strip() or None, ((name, arguments),))


@pytest.mark.parametrize("stream", [False, True])
async def test_auto_reads_calls_with_the_models_parser(make_client, engine: FakeEngine, stream: bool) -> None:
    engine.tool_call_parser = BracketParser()
    engine.reply = 'Checking. <call>get_weather {"city":"Paris"}</call>'
    client = await make_client()
    r = await client.post("/v1/chat/completions", json={**ASK, "stream": stream})
    assert engine.requests[0][1].structured is None  # auto leaves the answer free
    if stream:
        chunks = [ChatCompletionChunk.model_validate(e) for e in events(r.text)]
        assert chunks[0].choices[0].delta.role == "assistant"
        [last] = chunks[-1].choices
        content, calls, reason = last.delta.content, last.delta.tool_calls or [], last.finish_reason
        assert all(c.choices[0].delta.content is None for c in chunks[:-1])  # held until the calls are read
    else:
        [choice] = ChatCompletion.model_validate(r.json()).choices
        content, calls, reason = choice.message.content, choice.message.tool_calls or [], choice.finish_reason
    assert content == "Checking." and reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", '{"city":"Paris"}')]


async def test_auto_without_calls_or_tools_is_plain_text(make_client, engine: FakeEngine) -> None:
    engine.tool_call_parser = BracketParser()
    client = await make_client()
    for body in (ASK, {"messages": ASK["messages"]}, {**ASK, "tool_choice": "none"}):
        r = await client.post("/v1/chat/completions", json=body)
        assert r.json()["choices"][0]["message"] == {"role": "assistant", "content": "Paris is the capital."}
