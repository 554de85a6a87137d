"""Tool calls from the model's text: the constraint a forced tool choice puts on the answer, and the calls read
back from it.

A named function constrains the answer to the function's argument schema, so the whole answer is the call's
arguments. `required` constrains it to a JSON array of `{"name", "parameters"}` objects, one schema per tool.
Either works with any model, whether or not its chat template knows about tools.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from vif.runtime.protocols.chat import ChatCompletionRequest
from vif.runtime.protocols.structured import Constraint
from vif.runtime.protocols.tools import FunctionDefinition, NamedToolChoice

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def tool_constraint(request: ChatCompletionRequest) -> Constraint | None:
    """The schema a forced tool choice puts on the answer; None when the model may answer freely."""
    functions = request.forced_tools()
    if not functions:
        return None
    if isinstance(request.effective_tool_choice(), NamedToolChoice):
        return Constraint("json", functions[0].parameters or ANY_OBJECT, "tool_choice")
    return Constraint("json", calls_schema(functions, request.parallel_tool_calls), "tool_choice")


def calls_schema(functions: list[FunctionDefinition], parallel: bool) -> dict[str, Any]:
    """A JSON array of calls, each naming one of the functions and giving arguments that follow its schema."""
    call = [
        {
            "type": "object",
            "properties": {"name": {"type": "string", "enum": [f.name]}, "parameters": f.parameters or ANY_OBJECT},
            "required": ["name", "parameters"],
        }
        for f in functions
    ]
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": call}}
    if not parallel:
        schema["maxItems"] = 1
    return schema


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_call(name: str, arguments: str, call_id: str | None = None) -> dict[str, Any]:
    """One call in OpenAI's response shape."""
    return {"id": call_id or new_call_id(), "type": "function", "function": {"name": name, "arguments": arguments}}


def read_calls(request: ChatCompletionRequest, text: str) -> list[dict[str, Any]] | None:
    """The calls in a forced answer, or None when the text is not one (an answer cut short by max_tokens)."""
    choice = request.effective_tool_choice()
    if isinstance(choice, NamedToolChoice):
        return [tool_call(choice.function.name, text)]
    try:
        calls = json.loads(text)
    except ValueError:
        return None
    if not isinstance(calls, list) or not all(
        isinstance(c, dict) and c.keys() >= {"name", "parameters"} for c in calls
    ):
        return None
    return [tool_call(str(c["name"]), json.dumps(c["parameters"], ensure_ascii=False)) for c in calls]


def finish_reason(calls: list[dict[str, Any]] | None, engine_reason: str | None) -> str | None:
    """`tool_calls` when the answer ended naturally in calls, as clients looping over tools expect."""
    return "tool_calls" if calls and engine_reason == "stop" else engine_reason
