"""OpenAI (legacy) Completions request (`POST /v1/completions`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vif.runtime.protocols.common import MAX_LOGPROBS, OpenAISamplingFields
from vif.runtime.protocols.forwarded import ForwardedOpenAIFields

TokenIds = Annotated[list[int], Field(min_length=1)]
MAX_PROMPTS = 64


class CompletionRequest(OpenAISamplingFields, ForwardedOpenAIFields):
    prompt: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=MAX_PROMPTS)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_PROMPTS)]
    )
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    def prompts(self) -> list[str | list[int]]:
        """The prompt as a list of single prompts: text or token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if self.prompt and isinstance(self.prompt[0], int):
            return [self.prompt]  # type: ignore[list-item]
        return list(self.prompt)  # type: ignore[arg-type]
