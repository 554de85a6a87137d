"""vLLM's tokenizer requests: `POST /tokenize` (a prompt, or chat messages as a chat request renders them) and
`POST /detokenize`. Field names and defaults follow vLLM's server, so its clients (the serving benchmark aligns
its prompts with `/tokenize`) work unchanged."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, RootModel, Tag, ValidationInfo, field_validator

from vif.runtime.protocols.chat import MAX_MESSAGES, ChatMessage
from vif.runtime.protocols.common import StrictModel
from vif.runtime.protocols.tools import MAX_TOOLS, ChatTool

# A static cap, checked before the items; the model's context is the real limit, checked by the serving layer.
MAX_TOKEN_IDS = 1 << 20

ModelField = Annotated[str | None, Field(description="The served model name; defaults to the one model served.")]
ReturnTokenStrs = Annotated[bool, Field(description="Also return the tokenizer's string of each token.")]


class TokenizeCompletionRequest(StrictModel):
    """A plain-text prompt, tokenised as `/v1/completions` tokenises it."""

    model: ModelField = None
    prompt: str
    add_special_tokens: bool = Field(True, description="Add the tokenizer's special tokens (such as BOS).")
    return_token_strs: ReturnTokenStrs = False

    def text_length(self) -> int:
        return len(self.prompt)


class TokenizeChatRequest(StrictModel):
    """Chat messages, rendered by the model's chat template as `/v1/chat/completions` renders them."""

    model: ModelField = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    tools: Annotated[list[ChatTool], Field(max_length=MAX_TOOLS)] | None = Field(
        None, description="The tools offered, rendered as the chat template renders them."
    )
    add_generation_prompt: bool = Field(True, description="End with the header that starts the assistant's turn.")
    continue_final_message: bool = Field(
        False,
        description="Leave the last message open, for the model to continue it; needs `add_generation_prompt` false.",
    )
    add_special_tokens: bool = Field(False, description="Add special tokens on top of those the template adds.")
    return_token_strs: ReturnTokenStrs = False

    @field_validator("continue_final_message")
    @classmethod
    def _not_with_generation_prompt(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("add_generation_prompt"):
            raise ValueError("continue_final_message requires add_generation_prompt to be false")
        return value

    def text_length(self) -> int:
        """Characters of the messages' text, before the chat template adds its markers."""
        return sum(len(m.text()) for m in self.messages)


def _tokenize_kind(data: Any) -> str:
    """Which request a body is, so only that model validates it and its errors are the ones reported. The tags
    hold a '-', which `from_validation_error` leaves out of the parameter path it names."""
    chat = isinstance(data, TokenizeChatRequest) or (isinstance(data, dict) and "messages" in data)
    return "tokenize-chat" if chat else "tokenize-prompt"


class TokenizeRequest(
    RootModel[
        Annotated[
            Annotated[TokenizeCompletionRequest, Tag("tokenize-prompt")]
            | Annotated[TokenizeChatRequest, Tag("tokenize-chat")],
            Discriminator(_tokenize_kind),
        ]
    ]
):
    """`POST /tokenize`: a body with `messages` is a chat request, any other a prompt request."""


class DetokenizeRequest(StrictModel):
    """`POST /detokenize`: token ids back to text."""

    model: ModelField = None
    tokens: list[Annotated[int, Field(ge=0)]] = Field(max_length=MAX_TOKEN_IDS)
