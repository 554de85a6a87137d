"""vLLM's tool-call parsers behind `VLLMToolCallParser`, on the default model's real tokenizer (no engine, but the model's
files: marked `integration`)."""

from __future__ import annotations

import pytest

from vif.runtime.engine.types import ParsedToolCalls
from vif.runtime.model_prep import default_model_path

pytestmark = pytest.mark.integration  # the default model's files (make model), which `make integration` prepares

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_path()))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "hermes",
            'Sure. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
            ParsedToolCalls("Sure. ", (("get_weather", '{"city": "Paris"}'),)),
        ),
        ("pythonic", '[get_weather(city="Paris")]', ParsedToolCalls(None, (("get_weather", '{"city": "Paris"}'),))),
        ("hermes", "It is sunny.", ParsedToolCalls("It is sunny.", ())),
    ],
)
def test_a_parser_reads_its_familys_calls(tokenizer, name: str, text: str, expected: ParsedToolCalls) -> None:
    from vif.runtime.engine.tool_parser import VLLMToolCallParser

    assert VLLMToolCallParser(name, tokenizer).parse(text, TOOLS) == expected


@pytest.mark.parametrize(("name", "message"), [("nope", "not one of vLLM's parsers"), ("llama3_json", "does not fit")])
def test_a_parser_that_cannot_serve_fails_at_start_up(tokenizer, name: str, message: str) -> None:
    from vif.runtime.engine.tool_parser import VLLMToolCallParser

    with pytest.raises(ValueError, match=message):
        VLLMToolCallParser(name, tokenizer)
