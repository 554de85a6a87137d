"""Tool calling in OpenAI's chat shapes: the tools a request offers, its tool choice and the calls in messages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vif.runtime.protocols.strict import StrictModel
from vif.runtime.protocols.structured import FunctionName, SchemaObject

MAX_TOOLS = 128
MAX_TOOL_CALLS = 128


class FunctionDefinition(StrictModel):
    name: FunctionName
    description: str | None = None
    parameters: SchemaObject | None = Field(None, description="A JSON schema of the function's arguments.")
    strict: bool | None = None


class ChatTool(StrictModel):
    type: Literal["function"]
    function: FunctionDefinition


class ChosenFunction(StrictModel):
    name: FunctionName


class NamedToolChoice(StrictModel):
    """`{"type": "function", "function": {"name": ...}}`: the model must call this function."""

    type: Literal["function"]
    function: ChosenFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(StrictModel):
    name: str
    arguments: str = Field(description="The arguments as JSON text.")


class ToolCall(StrictModel):
    """A call an assistant message made, sent back by the client with the conversation."""

    id: str
    type: Literal["function"]
    function: FunctionCall
