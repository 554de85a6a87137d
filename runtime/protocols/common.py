"""Request fields shared by the protocols: the model, sampling parameters and streaming options."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_STOP_SEQUENCES = 16
MAX_LOGPROBS = 20
MAX_CHOICES = 16

StopField = Annotated[
    str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None,
    Field(description="Up to 16 sequences where generation stops; the stop text is not returned."),
]


class StrictModel(BaseModel):
    """Unknown fields are refused, so a typo gets a clear 400 instead of being silently ignored."""

    model_config = ConfigDict(extra="forbid")


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

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class OpenAISamplingFields(SamplingFields):
    """The fields the two OpenAI protocols add to the basic sampling ones."""

    n: int = Field(1, ge=1, le=MAX_CHOICES)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool = Field(False, description="vLLM extension: keep generating past the end-of-sequence token.")

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return value

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)
