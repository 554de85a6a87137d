"""The data a request carries through the serving layer: the served model, prompts, results and context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from vif.runtime.engine.types import PreparedOptions, SamplingOptions, TokenLogprob
from vif.runtime.protocols.common import SamplingFields

RequestT = TypeVar("RequestT", bound=SamplingFields)


@dataclass(frozen=True)
class ServedModel:
    """The model as clients see it: its name, its LoRA adapters' names, and how chat prompts are rendered and
    answered."""

    name: str
    chat_template: str | None = None
    response_role: str = "assistant"
    adapters: tuple[str, ...] = ()

    def adapter(self, served_name: str) -> str | None:
        """The adapter a request served under `served_name` runs through: None for the base model."""
        return None if served_name == self.name else served_name


@dataclass(frozen=True)
class PromptInput:
    """One prompt for the engine: token ids, plus the text when the response may echo it."""

    token_ids: list[int]
    text: str | None = None


@dataclass
class ChoiceResult:
    """A choice's output gathered over all steps (the non-streaming path)."""

    text: list[str] = field(default_factory=list)
    tokens: int = 0
    finish_reason: str | None = None
    logprobs: list[TokenLogprob | None] = field(default_factory=list)


@dataclass
class RequestContext(Generic[RequestT]):
    """One checked request: its prompts and sampling options, and what the formatting steps accumulate."""

    request_id: str
    created: int
    request: RequestT
    prompts: list[PromptInput]
    prepared: list[PreparedOptions]  # each prompt's sampling options, as the engine checked them
    model: str  # the name it is served under: the base model's or an adapter's (responses and metrics carry it)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_logprobs: dict[int, tuple[TokenLogprob | None, ...]] = field(default_factory=dict)
    text_offsets: dict[int, int] = field(default_factory=dict)
    held_text: dict[int, list[str]] = field(default_factory=dict)  # per choice, text sent only when it ends
    arrived: float | None = None  # wall-clock time the body was in, before it waited to be prepared

    @property
    def stream(self) -> bool:
        return self.request.stream

    @property
    def options(self) -> list[SamplingOptions]:
        return [p.options for p in self.prepared]

    @property
    def sequences(self) -> int:
        """Sequences the engine will run for this request: prompts x n."""
        return sum(p.options.n for p in self.prepared)

    def usage(self) -> dict[str, int]:
        total = self.prompt_tokens + self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": total,
        }
