"""OpenAI Chat Completions request (`POST /v1/chat/completions`)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from vif.runtime.protocols.common import MAX_LOGPROBS, OpenAISamplingFields, StrictModel
from vif.runtime.protocols.forwarded import ForwardedChatFields
from vif.runtime.protocols.tools import (
    MAX_TOOL_CALLS,
    MAX_TOOLS,
    ChatTool,
    FunctionDefinition,
    NamedToolChoice,
    ToolCall,
    ToolChoice,
)

MAX_MESSAGES = 4096
MAX_CONTENT_PARTS = 256


class TextPart(StrictModel):
    """A text content part; clients such as vLLM's benchmark send content as a list of these."""

    type: Literal["text"]
    text: str


class ChatMessage(StrictModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | Annotated[list[TextPart], Field(max_length=MAX_CONTENT_PARTS)] | None = Field(
        None, description="The text; may be null (or absent) only in an assistant message that makes tool calls."
    )
    name: str | None = None
    tool_calls: Annotated[list[ToolCall], Field(max_length=MAX_TOOL_CALLS)] | None = None
    tool_call_id: str | None = Field(None, description="In a tool message: the call it answers.")

    @model_validator(mode="after")
    def _tool_fields_in_their_roles(self) -> ChatMessage:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("tool_call_id is required in tool messages and allowed only there")
        if self.content is None and not self.tool_calls:
            raise ValueError("content may be null only in an assistant message with tool_calls")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def for_template(self) -> dict[str, Any]:
        """The message as chat templates expect it: text content, and tool-call arguments as objects."""
        message: dict[str, Any] = {"role": self.role, "content": self.text()}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": c.type, "function": {"name": c.function.name, "arguments": _arguments(c)}}
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


def _arguments(call: ToolCall) -> Any:
    """Templates index into the arguments (`arguments.city`), so JSON text becomes an object where it is one."""
    try:
        parsed = json.loads(call.function.arguments)
    except ValueError:
        return call.function.arguments
    return parsed if isinstance(parsed, dict) else call.function.arguments


class ChatCompletionRequest(OpenAISamplingFields, ForwardedChatFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: Annotated[list[ChatTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = Field(None, description="Default: auto with tools, none without.")
    parallel_tool_calls: bool = True

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs requires logprobs to be true")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_fits(cls, value: ToolChoice | None, info: ValidationInfo) -> ToolChoice | None:
        names = {t.function.name for t in info.data.get("tools") or ()}
        if isinstance(value, NamedToolChoice) and value.function.name not in names:
            raise ValueError(f"it names the function '{value.function.name}', which is not in tools")
        if value == "required" and not names:
            raise ValueError("'required' needs tools")
        forced = value == "required" or isinstance(value, NamedToolChoice)
        response_format = info.data.get("response_format")
        if forced and (info.data.get("structured_outputs") or (response_format and response_format.type != "text")):
            raise ValueError("a tool choice that forces a call cannot be combined with another output constraint")
        return value

    def effective_tool_choice(self) -> ToolChoice:
        """OpenAI's default: `auto` when tools are given, `none` otherwise."""
        return self.tool_choice or ("auto" if self.tools else "none")

    def forced_tools(self) -> list[FunctionDefinition]:
        """The functions the answer must call (one named, or any of `required`); empty when it may answer freely."""
        choice = self.effective_tool_choice()
        tools = [t.function for t in self.tools or ()]
        if isinstance(choice, NamedToolChoice):
            return [f for f in tools if f.name == choice.function.name]
        return tools if choice == "required" else []

    def text_lengths(self) -> list[int]:
        """Characters of the one prompt's text, before the chat template adds its markers."""
        return [sum(len(m.text()) for m in self.messages)]

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
