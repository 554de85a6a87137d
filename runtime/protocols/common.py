"""Request fields shared by the protocols: the model, sampling parameters and streaming options."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

MAX_STOP_SEQUENCES = 16
MAX_LOGPROBS = 20
MAX_CHOICES = 16

StopString = Annotated[str, Field(min_length=1)]
StopField = Annotated[
    StopString | Annotated[list[StopString], Field(max_length=MAX_STOP_SEQUENCES)] | None,
    Field(description="Up to 16 non-empty sequences where generation stops; the stop text is not returned."),
]


class ListTooLong(ValueError):
    """A list in the body is longer than its field allows, found before its items are validated."""

    def __init__(self, field: str, limit: int, length: int) -> None:
        super().__init__(f"at most {limit} items are allowed, got {length}")
        self.field = field


class StrictModel(BaseModel):
    """Unknown fields are refused, so a typo gets a clear 400 instead of being silently ignored; types are strict
    (`"n": "2"` is refused, as the document says), but an integer is a valid float.

    pydantic checks a list's `max_length` only after validating every item (40,000 messages cost ~60 ms, a
    list of 400,000 strings in a union ~800 ms), so the same limits, read from the fields, are checked first.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_long_lists(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, limit in _list_limits(cls):
                value = data.get(name)
                if isinstance(value, list) and len(value) > limit:
                    raise ListTooLong(name, limit, len(value))
        return data


@cache
def _list_limits(model: type[BaseModel]) -> tuple[tuple[str, int], ...]:
    limits = []
    for name, field in model.model_fields.items():
        for meta in field.metadata:
            if getattr(meta, "max_length", None) is not None:
                limits.append((name, int(meta.max_length)))
    return tuple(limits)


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

    def output_limit(self) -> int | None:
        """The completion's token limit the client asked for (None: whatever the context leaves)."""
        return self.max_tokens

    def text_lengths(self) -> list[int]:
        """Characters of text per prompt, for a size bound before tokenising (empty: no bound known)."""
        return []


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
