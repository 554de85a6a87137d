"""OpenAI Chat Completions request (`POST /v1/chat/completions`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from vif.runtime.protocols.common import MAX_LOGPROBS, OpenAISamplingFields, StrictModel

MAX_MESSAGES = 4096
MAX_CONTENT_PARTS = 256


class TextPart(StrictModel):
    """A text content part; clients such as vLLM's benchmark send content as a list of these."""

    type: Literal["text"]
    text: str


class ChatMessage(StrictModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[TextPart], Field(max_length=MAX_CONTENT_PARTS)]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(OpenAISamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs requires logprobs to be true")
        return value

    def text_lengths(self) -> list[int]:
        """Characters of the one prompt's text, before the chat template adds its markers."""
        return [sum(len(m.text()) for m in self.messages)]

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
