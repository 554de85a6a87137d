"""vLLM's sampling extensions and output constraints on every protocol, through the real app with a scripted
engine: what reaches the engine, and what is refused with a 400 naming the field."""

from __future__ import annotations

import pytest

from helpers.fake_engine import FakeEngine
from vif.runtime.engine.types import EngineRequestError, PreparedOptions, SamplingOptions, StructuredOutput
from vif.runtime.protocols.structured import MAX_CONSTRAINT_CHARS

ROUTES = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"prompt": "hi"},
    "/generate": {"prompt": "hi"},
}
EXTENSIONS = {
    "top_k": 5,
    "min_p": 0.1,
    "repetition_penalty": 1.2,
    "min_tokens": 3,
    "stop_token_ids": [7, 9],
    "logit_bias": {"42": -100, "7": 2.5},
    "skip_special_tokens": False,
    "include_stop_str_in_output": True,
    "user": "someone",
}
# Over the bound once written as JSON: 1,000 string properties.
LARGE_SCHEMA = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(1000)}}


@pytest.fixture
async def client(make_client):
    return await make_client()


@pytest.mark.parametrize("path", ROUTES)
async def test_sampling_extensions_reach_the_engine(client, engine: FakeEngine, path: str) -> None:
    r = await client.post(path, json={**ROUTES[path], **EXTENSIONS})
    assert r.status_code == 200, r.text
    options: SamplingOptions = engine.requests[0][1]
    assert (options.top_k, options.min_p, options.repetition_penalty, options.min_tokens) == (5, 0.1, 1.2, 3)
    assert options.stop_token_ids == (7, 9)
    assert dict(options.logit_bias) == {42: -100.0, 7: 2.5}
    assert (options.skip_special_tokens, options.include_stop_str_in_output) == (False, True)


@pytest.mark.parametrize("path", ROUTES)
async def test_unset_extensions_keep_the_engine_defaults(client, engine: FakeEngine, path: str) -> None:
    await client.post(path, json=ROUTES[path])
    defaults = SamplingOptions(max_tokens=1)
    options = engine.requests[0][1]
    for name in ("top_k", "min_p", "repetition_penalty", "min_tokens", "stop_token_ids", "logit_bias", "structured"):
        assert getattr(options, name) == getattr(defaults, name), name


@pytest.mark.parametrize(
    ("path", "extra", "structured"),
    [
        ("/generate", {"structured_outputs": {"regex": "[0-9]+"}}, StructuredOutput("regex", "[0-9]+")),
        ("/v1/completions", {"structured_outputs": {"choice": ["a", "b"]}}, StructuredOutput("choice", ("a", "b"))),
        (
            "/v1/chat/completions",
            {"structured_outputs": {"json": {"type": "object"}}},
            StructuredOutput("json", {"type": "object"}),
        ),
        (
            "/v1/chat/completions",
            {"structured_outputs": {"grammar": 'root ::= "x"'}},
            StructuredOutput("grammar", 'root ::= "x"'),
        ),
        ("/v1/chat/completions", {"response_format": {"type": "json_object"}}, StructuredOutput("json_object", True)),
        ("/v1/chat/completions", {"response_format": {"type": "text"}}, None),
        (
            "/v1/completions",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}},
            StructuredOutput("json", {"type": "array"}),
        ),
    ],
)
async def test_constraints_reach_the_engine(
    client, engine: FakeEngine, path: str, extra: dict, structured: StructuredOutput | None
) -> None:
    r = await client.post(path, json={**ROUTES[path], **extra})
    assert r.status_code == 200, r.text
    assert engine.requests[0][1].structured == structured


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/generate", {"top_k": -2}, "top_k"),
        ("/generate", {"min_p": 1.5}, "min_p"),
        ("/v1/completions", {"repetition_penalty": 0}, "repetition_penalty"),
        ("/v1/completions", {"logit_bias": {"5": 101}}, "logit_bias.5"),
        ("/v1/chat/completions", {"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias"),
        ("/v1/chat/completions", {"stop_token_ids": [-1]}, "stop_token_ids[0]"),
        ("/generate", {"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs"),
        ("/generate", {"structured_outputs": {}}, "structured_outputs"),
        (
            "/generate",
            {"structured_outputs": {"grammar": "x" * (MAX_CONSTRAINT_CHARS + 1)}},
            "structured_outputs.grammar",
        ),
        (
            "/v1/completions",
            {"structured_outputs": {"regex": "a" * (MAX_CONSTRAINT_CHARS + 1)}},
            "structured_outputs.regex",
        ),
        ("/generate", {"structured_outputs": {"json": LARGE_SCHEMA}}, "structured_outputs.json"),
        (
            "/v1/chat/completions",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": LARGE_SCHEMA}}},
            "response_format.json_schema.schema",
        ),
        (
            "/v1/chat/completions",
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": LARGE_SCHEMA}}]},
            "tools[0].function.parameters",
        ),
        ("/generate", {"response_format": {"type": "json_object"}}, "response_format"),
        ("/v1/chat/completions", {"response_format": {"type": "json_schema"}}, "response_format"),
        (
            "/v1/chat/completions",
            {"response_format": {"type": "json_object"}, "structured_outputs": {"regex": "a"}},
            "response_format",
        ),
    ],
)
async def test_bad_fields_are_400s_naming_them(client, path: str, extra: dict, param: str) -> None:
    r = await client.post(path, json={**ROUTES[path], **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_a_constraint_the_engine_refuses_is_blamed_on_its_field(client, engine: FakeEngine) -> None:
    prepare = engine.prepare_options

    def refuse_constraints(options: SamplingOptions) -> PreparedOptions:
        if options.structured is not None:
            raise EngineRequestError("Failed to transform json schema into a grammar")
        return prepare(options)

    engine.prepare_options = refuse_constraints  # type: ignore[method-assign]
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}
    for path in ("/v1/chat/completions", "/v1/completions"):
        r = await client.post(path, json={**ROUTES[path], "response_format": schema})
        assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    r = await client.post("/generate", json={"prompt": "x", "structured_outputs": {"json": "{"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "structured_outputs"
