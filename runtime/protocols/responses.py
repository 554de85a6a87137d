"""Response bodies of every route, as pydantic models: the OpenAPI document is generated from them, and tests
validate real responses against them.

They describe what the serving layer produces, field for field: unknown fields are refused, so a field added to
a response without its model makes the conformance tests fail instead of leaving the document behind.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# vLLM's finish reasons (`vllm.v1.engine.FINISH_REASON_STRINGS`); null while a choice is still generating.
FinishReason = Literal["stop", "length", "abort", "error", "repetition", "tool_calls"]


class ResponseModel(BaseModel):
    """A response body: exactly these fields, no others."""

    model_config = ConfigDict(extra="forbid")


class Usage(ResponseModel):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


class ErrorDetail(ResponseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, rate_limit_error, ...")
    param: str | None = Field(description="The request field at fault, as a path like `messages[0].content`.")
    code: str | None = Field(description="A machine-readable reason, such as `context_length_exceeded`.")


class ErrorResponse(ResponseModel):
    """Every error, OpenAI's shape; also sent as the last `data:` event when a stream fails after it started."""

    error: ErrorDetail


# OpenAI Chat Completions -------------------------------------------------------------------------------------


class ChatTopLogprob(ResponseModel):
    token: str
    logprob: float
    bytes: list[int] = Field(description="The token's UTF-8 bytes.")


class ChatTokenLogprob(ChatTopLogprob):
    top_logprobs: list[ChatTopLogprob] = Field(description="The `top_logprobs` most likely tokens at this position.")


class ChatLogprobs(ResponseModel):
    content: list[ChatTokenLogprob]


class ResponseFunctionCall(ResponseModel):
    name: str
    arguments: str = Field(description="The arguments as JSON text.")


class ResponseToolCall(ResponseModel):
    id: str
    type: Literal["function"]
    function: ResponseFunctionCall


class ChatResponseMessage(ResponseModel):
    role: str = Field(description="The model's configured response role, `assistant` by default.")
    content: str | None = Field(description="Null when the answer is tool calls.")
    tool_calls: list[ResponseToolCall] | None = Field(None, description="Present when the answer calls tools.")


class ChatChoice(ResponseModel):
    index: int = Field(ge=0)
    message: ChatResponseMessage
    logprobs: ChatLogprobs | None = Field(description="Null unless the request set `logprobs`.")
    finish_reason: FinishReason | None


class ChatCompletion(ResponseModel):
    """`POST /v1/chat/completions` without `stream`."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class FunctionCallDelta(ResponseModel):
    name: str | None = Field(None, description="In the call's first delta.")
    arguments: str = Field(description="The next piece of the arguments' JSON text.")


class ToolCallDelta(ResponseModel):
    index: int = Field(ge=0, description="Which call of the message this piece belongs to.")
    id: str | None = Field(None, description="In the call's first delta.")
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class ChatDelta(ResponseModel):
    role: str | None = Field(None, description="Only in a choice's first chunk.")
    content: str | None = Field(None, description="Absent or null in chunks that carry tool calls.")
    tool_calls: list[ToolCallDelta] | None = None


class ChatChunkChoice(ResponseModel):
    index: int = Field(ge=0)
    delta: ChatDelta
    finish_reason: FinishReason | None
    logprobs: ChatLogprobs | None = Field(None, description="Present only when the request set `logprobs`.")


class ChatCompletionChunk(ResponseModel):
    """One `data:` event of a streamed chat completion. With `stream_options.include_usage`, a last chunk has no
    choices and carries the usage."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(None, description="Only in the last chunk, and only with `include_usage`.")


# OpenAI Completions ------------------------------------------------------------------------------------------


class CompletionLogprobs(ResponseModel):
    """The legacy shape: parallel lists, one entry per token (with `echo`, the prompt's tokens first)."""

    tokens: list[str]
    token_logprobs: list[float | None] = Field(description="Null for the prompt's first token, which has none.")
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(ResponseModel):
    index: int = Field(ge=0)
    text: str
    logprobs: CompletionLogprobs | None = Field(description="Null unless the request set `logprobs`.")
    finish_reason: FinishReason | None


class Completion(ResponseModel):
    """`POST /v1/completions` without `stream`."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunk(ResponseModel):
    """One `data:` event of a streamed completion; the usage chunk (on request) comes last, without choices."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = Field(None, description="Only in the last chunk, and only with `include_usage`.")


# /generate ---------------------------------------------------------------------------------------------------


class GenerateResponse(ResponseModel):
    """`POST /generate` without `stream`."""

    id: str
    object: Literal["generate"]
    created: int
    model: str
    output: str
    finish_reason: FinishReason | None
    usage: Usage


class GenerateChunk(ResponseModel):
    """One `data:` event of a streamed `/generate`: the new text."""

    id: str
    output: str
    finish_reason: FinishReason | None


# /tokenize and /detokenize (vLLM's shapes) -------------------------------------------------------------------


class TokenizeResponse(ResponseModel):
    """`POST /tokenize`: the prompt's token ids, as the model would be given them."""

    count: int = Field(ge=0, description="The number of tokens.")
    max_model_len: int = Field(description="The model's context length, for comparison with `count`.")
    tokens: list[int]
    token_strs: list[str] | None = Field(description="The tokenizer's string of each token, with `return_token_strs`.")


class DetokenizeResponse(ResponseModel):
    """`POST /detokenize`: the text of the token ids."""

    prompt: str


# Models and probes -------------------------------------------------------------------------------------------


class ModelCard(ResponseModel):
    id: str = Field(description="The name to send as a request's `model`.")
    object: Literal["model"]
    created: int
    owned_by: str
    root: str = Field(description="The base model's name.")
    parent: str | None = Field(description="For a LoRA adapter, the base model it runs on; null for the base model.")
    max_model_len: int | None = Field(description="Null while the engine is still loading.")


class ModelList(ResponseModel):
    """`GET /v1/models`: the served model, then each of its LoRA adapters."""

    object: Literal["list"]
    data: list[ModelCard]


class HealthStatus(ResponseModel):
    """`GET /health`: 200 `ok` while the process is alive (loading or serving), 503 `unhealthy` otherwise."""

    status: Literal["ok", "unhealthy"]


class ReadyStatus(ResponseModel):
    """`GET /ready`: 200 `ready` once the engine serves, 503 `not ready` before or after."""

    status: Literal["ready", "not ready"]
