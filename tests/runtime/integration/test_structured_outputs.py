"""Structured outputs on the real engine: every answer follows its JSON schema, regex or choice list, on the three
protocols, streamed and not; a schema the backend cannot compile is a 400 naming the field it came from; a slow one stalls no other request."""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import pytest

from helpers.cluster import wait_for
from helpers.exposition import metric

from .conftest import Server

NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}, "zip": {"type": "integer"}},
            "required": ["city", "zip"],
        },
    },
    "required": ["name", "address"],
}
ENUM = {"type": "string", "enum": ["red", "green", "blue"]}
ARRAY = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 2, "maxItems": 4}
ASK = [{"role": "user", "content": "Describe a person, a colour or some numbers as JSON."}]


def response_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


@pytest.mark.parametrize("schema", [NESTED, ENUM, ARRAY], ids=["nested-object", "enum", "array-min-items"])
def test_every_chat_answer_follows_the_schema(http: httpx.Client, schema: dict) -> None:
    body = {"messages": ASK, "response_format": response_format(schema), "n": 3, "temperature": 0.8, "seed": 7}
    r = http.post("/v1/chat/completions", json={**body, "max_tokens": 160})
    assert r.status_code == 200, r.text
    for choice in r.json()["choices"]:
        assert choice["finish_reason"] == "stop", choice
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)


def test_a_streamed_completion_follows_the_schema(http: httpx.Client) -> None:
    body = {"prompt": "A person as JSON:", "response_format": response_format(NESTED), "max_tokens": 160}
    with http.stream("POST", "/v1/completions", json={**body, "stream": True, "temperature": 0}) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
    text = "".join(json.loads(e)["choices"][0]["text"] for e in events)
    jsonschema.validate(json.loads(text), NESTED)


def test_regex_and_choice_are_honoured_on_every_protocol(http: httpx.Client) -> None:
    pattern = "[0-9]{3}-[0-9]{4}"
    regex = {"structured_outputs": {"regex": pattern}, "max_tokens": 20, "temperature": 0.7, "seed": 3}
    r = http.post("/generate", json={"prompt": "Give me a phone number.", **regex})
    assert re.fullmatch(pattern, r.json()["output"]), r.text
    r = http.post("/v1/completions", json={"prompt": "Phone:", "n": 2, **regex})
    assert all(re.fullmatch(pattern, c["text"]) for c in r.json()["choices"]), r.text
    choice = {"structured_outputs": {"choice": ["yes", "no", "maybe"]}, "max_tokens": 5}
    r = http.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Is Paris in France?"}], **choice}
    )
    assert r.json()["choices"][0]["message"]["content"] in {"yes", "no", "maybe"}, r.text


def test_json_object_is_json(http: httpx.Client) -> None:
    body = {"messages": ASK, "response_format": {"type": "json_object"}, "max_tokens": 300, "temperature": 0}
    content = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert content.lstrip().startswith("{")


def test_alternatives_a_constraint_excludes_have_a_finite_logprob(http: httpx.Client) -> None:
    """A JSON object's first token allows few others: the top 19 include excluded ones, whose -inf a JSON encoder
    would write as null (schemathesis found it). They come as vLLM's server sends them, at -9999."""
    body = {"prompt": "x", "response_format": {"type": "json_object"}, "logprobs": 19, "max_tokens": 3}
    logprobs = http.post("/v1/completions", json=body).json()["choices"][0]["logprobs"]
    values = [v for top in logprobs["top_logprobs"] for v in top.values()] + logprobs["token_logprobs"]
    assert values and all(isinstance(v, float) and v >= -9999.0 for v in values), logprobs
    assert -9999.0 in values  # the case this pins: without it the test checks nothing


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            {"messages": ASK, "response_format": response_format({"properties": 5})},
            "response_format",
        ),
        ("/v1/completions", {"prompt": "x", "response_format": response_format({"type": "nope"})}, "response_format"),
        ("/generate", {"prompt": "x", "structured_outputs": {"regex": "[unclosed"}}, "structured_outputs"),
        ("/generate", {"prompt": "x", "structured_outputs": {"grammar": "root ::= ???"}}, "structured_outputs"),
        ("/v1/chat/completions", {"messages": ASK, "structured_outputs": {"json": "{not json"}}, "structured_outputs"),
    ],
)
def test_a_constraint_the_backend_cannot_compile_is_a_400(
    http: httpx.Client, path: str, body: dict, param: str
) -> None:
    for stream in (False, True):
        r = http.post(path, json={**body, "stream": stream})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param


def slow_schema(salt: str) -> dict:
    """A schema under the 16 KiB bound that takes the backend seconds to compile: 190 strings, each with its own
    pattern of bounded repeats. The salt starts every pattern, so neither of the backend's caches (whole grammars,
    and each pattern's) can answer it: without it a second run in one session compiled in 0.1 s."""
    properties = {
        f"f{i}": {"type": "string", "pattern": f"^{salt}[a-z]{{{i % 7 + 1},{i % 11 + 9}}}[0-9]{{2,{i % 5 + 3}}}$"}
        for i in range(190)
    }
    return {"type": "object", "properties": properties, "required": list(properties)}


def test_a_slow_schema_compiles_while_other_requests_go_on(server: Server, http: httpx.Client) -> None:
    """The engine compiles constraints in a thread pool of its own: while they wait for their grammars, the
    scheduler serves the rest. Asserted by order, not by time: the probe and a one-token chat finish while a slow
    request is still waiting in the engine for its grammar. Two slow schemas, so the chat has two compiles' time
    (the pool runs one at a time on two cores) rather than what is left of one: with one, a compile that began
    during the runtime's own checks once finished first on a busy machine."""
    bodies = [
        {"prompt": "x", "response_format": response_format(slow_schema(uuid.uuid4().hex[:4])), "max_tokens": 2}
        for _ in range(2)
    ]
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(http.post, "/v1/completions", json=body) for body in bodies]
        wait_for(
            lambda: metric(http.get("/metrics").text, "vllm:num_requests_waiting") >= 2,
            "both slow requests waiting in the engine for their grammars",
            30,
            every=0.05,
        )
        assert httpx.get(server.base_url + "/health").status_code == 200
        small = http.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 1})
        assert small.status_code == 200, small.text
        assert not all(s.done() for s in slow), "both slow schemas compiled before the small chat: it proves nothing"
        for s in slow:
            assert s.result().status_code == 200, s.result().text
