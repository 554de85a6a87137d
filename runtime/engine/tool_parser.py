"""Tool calls in a model's free answer (`tool_choice: auto`), read by one of vLLM's tool-call parsers.

Each model family writes calls its own way (`<tool_call>{...}</tool_call>`, `[f(x=1)]`, ...); vLLM keeps a parser
per family in a registry, named in `model_config.json` as `tool_call_parser`. This is the one place that speaks
to them, so the serving layer sees only `ParsedToolCalls`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.tool_parsers import ToolParserManager

from vif.runtime.engine.types import ParsedToolCalls


class VLLMToolCallParser:
    """One registered parser, built for the model's tokenizer; a fresh instance per answer (parsers keep
    state)."""

    def __init__(self, name: str, tokenizer: Any) -> None:
        try:
            self._parser = ToolParserManager.get_tool_parser(name)
        except KeyError:
            known = ", ".join(sorted(ToolParserManager.list_registered()))
            raise ValueError(f"tool_call_parser '{name}' is not one of vLLM's parsers ({known})") from None
        self._tokenizer = tokenizer
        try:
            self._parser(tokenizer)  # some parsers need tokens the model's vocabulary lacks: fail at start-up
        except Exception as exc:
            raise ValueError(f"tool_call_parser '{name}' does not fit this model's tokenizer: {exc}") from None
        self.name = name

    def parse(self, text: str, tools: Sequence[dict[str, Any]]) -> ParsedToolCalls:
        request = ChatCompletionRequest.model_validate(
            {"model": "", "messages": [], "tools": list(tools), "tool_choice": "auto"}
        )
        found = self._parser(self._tokenizer, request.tools).extract_tool_calls(text, request)
        if not found.tools_called:
            return ParsedToolCalls(text, ())
        calls = tuple((call.function.name, call.function.arguments) for call in found.tool_calls)
        return ParsedToolCalls(found.content or None, calls)
