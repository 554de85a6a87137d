"""Output constraints a request may ask for: OpenAI's `response_format` and vLLM's `structured_outputs`.

Both only describe the constraint; the engine's structured-output backend enforces it while sampling. Each is
bounded in size: the backend compiles it against the whole vocabulary in the engine's process, so its cost grows
with its text, and a request should not be able to buy seconds of the engine's CPU with one field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import AfterValidator, Field, model_validator

from vif.runtime.protocols.strict import StrictModel

MAX_CHOICE_OPTIONS = 256
# 16 KiB of grammar, regex or schema text: real ones are a few KiB. The bound stops megabyte constraints; it does
# not bound compile time, which depends on the shape (docs/security.md: a 12 KB schema of 200 patterned strings
# took 17 s to compile on these 2 cores).
MAX_CONSTRAINT_CHARS = 16_384
FunctionName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


def _bounded_schema(schema: dict[str, Any]) -> dict[str, Any]:
    size = len(orjson.dumps(schema))
    if size > MAX_CONSTRAINT_CHARS:
        raise ValueError(f"the JSON schema is {size} characters as JSON; at most {MAX_CONSTRAINT_CHARS} are allowed")
    return schema


ConstraintText = Annotated[str, Field(min_length=1, max_length=MAX_CONSTRAINT_CHARS)]
SchemaObject = Annotated[dict[str, Any], AfterValidator(_bounded_schema)]


class Constraint(NamedTuple):
    """What the output must follow: `kind` is json, json_object, regex, choice or grammar; `param` is the request
    field it came from, named in the error when the engine refuses it."""

    kind: str
    value: Any
    param: str


class StructuredOutputs(StrictModel):
    """vLLM's extension: exactly one of a JSON schema, a regular expression, a list of choices or a grammar."""

    json_schema: SchemaObject | ConstraintText | None = Field(
        None, alias="json", description="A JSON schema (object or text)."
    )
    regex: ConstraintText | None = None
    choice: Annotated[list[str], Field(min_length=1, max_length=MAX_CHOICE_OPTIONS)] | None = None
    grammar: ConstraintText | None = Field(None, description="An EBNF or Lark grammar.")

    @model_validator(mode="after")
    def _exactly_one(self) -> StructuredOutputs:
        given = [name for name in ("json_schema", "regex", "choice", "grammar") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of json, regex, choice and grammar")
        return self

    def constraint(self) -> tuple[str, Any]:
        """The constraint's kind (as the engine names it) and value."""
        if self.json_schema is not None:
            return "json", self.json_schema
        if self.regex is not None:
            return "regex", self.regex
        if self.choice is not None:
            return "choice", tuple(self.choice)
        return "grammar", self.grammar


class JSONSchemaFormat(StrictModel):
    name: FunctionName
    description: str | None = None
    json_schema: SchemaObject | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(StrictModel):
    """OpenAI's `response_format`: free text, any JSON object, or JSON that follows a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required when, and only when, type is 'json_schema'")
        return self

    def constraint(self) -> tuple[str, Any] | None:
        """The constraint's kind and value, or None for free text. A `json_schema` without a schema is any JSON."""
        if self.type == "json_schema" and self.json_schema and self.json_schema.json_schema is not None:
            return "json", self.json_schema.json_schema
        if self.type == "text":
            return None
        return "json_object", True
