"""Request fields shared by the protocols: the model, sampling parameters and streaming options."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from vif.runtime.protocols.strict import ListTooLong, StrictModel
from vif.runtime.protocols.structured import Constraint, ResponseFormat, StructuredOutputs

__all__ = ["ListTooLong", "OpenAISamplingFields", "SamplingFields", "StrictModel"]

MAX_STOP_SEQUENCES = 16
MAX_STOP_TOKEN_IDS = 64
MAX_LOGIT_BIAS = 300  # OpenAI's limit
MAX_LOGPROBS = 20
MAX_CHOICES = 16

StopString = Annotated[str, Field(min_length=1)]
StopField = Annotated[
    StopString | Annotated[list[StopString], Field(max_length=MAX_STOP_SEQUENCES)] | None,
    Field(description="Up to 16 non-empty sequences where generation stops; the stop text is not returned."),
]


class StreamOptions(StrictModel):
    include_usage: bool = False


class SamplingFields(StrictModel):
    """Sampling parameters with OpenAI's ranges. `None` means the OpenAI default."""

    model: str | None = Field(None, description="The served model name; defaults to the one model served.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: StopField = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stream: bool = False
    # vLLM's sampling extensions, on every protocol
    top_k: int | None = Field(None, ge=-1, description="Sample from the k likeliest tokens; 0 or -1: all.")
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    min_tokens: int = Field(0, ge=0, description="Tokens to generate before end-of-sequence or stop ids count.")
    stop_token_ids: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=MAX_STOP_TOKEN_IDS)] | None = None
    logit_bias: (
        Annotated[
            dict[Annotated[str, Field(pattern=r"^\d{1,9}$")], Annotated[float, Field(ge=-100, le=100)]],
            Field(max_length=MAX_LOGIT_BIAS),
        ]
        | None
    ) = Field(None, description="Token id (as a string) to a bias from -100 to 100 added to its logit.")
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    structured_outputs: StructuredOutputs | None = None
    user: str | None = Field(None, description="An end-user id; accepted and ignored.")

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def output_limit(self) -> int | None:
        """The completion's token limit the client asked for (None: whatever the context leaves)."""
        return self.max_tokens

    def text_lengths(self) -> list[int]:
        """Characters of text per prompt, for a size bound before tokenising (empty: no bound known)."""
        return []

    def constraint(self) -> Constraint | None:
        """The output constraint asked for: its kind, value and the parameter it came from."""
        if self.structured_outputs is None:
            return None
        return Constraint(*self.structured_outputs.constraint(), param="structured_outputs")


class OpenAISamplingFields(SamplingFields):
    """The fields the two OpenAI protocols add to the basic sampling ones."""

    n: int = Field(1, ge=1, le=MAX_CHOICES)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    ignore_eos: bool = Field(False, description="vLLM extension: keep generating past the end-of-sequence token.")

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return value

    @field_validator("response_format")
    @classmethod
    def _one_constraint(cls, value: ResponseFormat | None, info: ValidationInfo) -> ResponseFormat | None:
        if value is not None and value.type != "text" and info.data.get("structured_outputs") is not None:
            raise ValueError("response_format cannot be combined with structured_outputs; use one of them")
        return value

    def constraint(self) -> Constraint | None:
        found = self.response_format.constraint() if self.response_format else None
        return Constraint(*found, param="response_format") if found else super().constraint()

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)
