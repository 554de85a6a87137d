"""The narrow interface between the serving layer and an inference engine.

Serving classes speak only these types, so vLLM stays behind `VLLMEngineClient` and unit tests can drive the
whole request path with a fake engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class EngineRequestError(ValueError):
    """The engine refused the request's input (a chat template that raises, a sampling parameter it does not
    accept): the client's fault, so the serving layer answers 400 with this message, naming `param`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class EngineDeadError(RuntimeError):
    """The engine can no longer serve (its core process died): every request gets 503 and the process exits."""


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint the engine's structured-output backend enforces while sampling: `kind` is json (a schema),
    json_object, regex, choice (a tuple of strings) or grammar."""

    kind: str
    value: Any


@dataclass(frozen=True)
class SamplingOptions:
    """What a request asks of the sampler, independent of the engine's own parameter class."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    ignore_eos: bool = False
    top_k: int = 0  # 0: no limit
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    min_tokens: int = 0
    stop_token_ids: tuple[int, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    structured: StructuredOutput | None = None


@dataclass(frozen=True)
class PreparedOptions:
    """Sampling options the engine has checked, with its own form of them (`native`, opaque to the serving layer):
    built once when the request is checked, and handed back to `generate`, which runs on that same object."""

    options: SamplingOptions
    native: object = None


@dataclass(frozen=True)
class ParsedToolCalls:
    """A free answer read by a tool-call parser: the text around the calls, and each call's function name and
    arguments (JSON text)."""

    content: str | None
    calls: tuple[tuple[str, str], ...]


LOWEST_LOGPROB = -9999.0


def finite_logprob(logprob: float) -> float:
    """A logprob JSON can carry: a token that sampling excluded (a structured output's mask, top_k) has -inf, which a
    JSON encoder writes as null or not at all. vLLM's server clamps to the same floor."""
    return logprob if logprob > LOWEST_LOGPROB else LOWEST_LOGPROB  # NaN too


@dataclass(frozen=True)
class TokenLogprob:
    """One generated (or prompt) token, its log probability and the most likely alternatives."""

    token: str
    logprob: float | None  # None only for the first prompt token, which nothing precedes
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ChoiceDelta:
    """What one choice (of `n`) produced since the previous step."""

    index: int
    text: str
    token_count: int
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob | None, ...] | None = None


@dataclass(frozen=True)
class EngineStep:
    """One step of a request: the new output of every choice that advanced."""

    prompt_tokens: int
    choices: tuple[ChoiceDelta, ...]
    finished: bool
    prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None


@dataclass(frozen=True)
class EngineInfo:
    """Static facts about the loaded model that the serving layer needs."""

    max_model_len: int
    vocab_size: int
    max_num_seqs: int = 256  # sequences the engine runs in one batch: the default concurrency limit follows it
    # The longest token's text: a prompt of C characters has at least C / max_token_chars tokens, so text far
    # beyond the context is refused without tokenising it.
    max_token_chars: int = 64


class ToolCallParser(Protocol):
    """Reads the tool calls in a free answer, the way the model's family writes them."""

    def parse(self, text: str, tools: Sequence[dict[str, Any]]) -> ParsedToolCalls: ...


class EngineClient(Protocol):
    """What a serving class may ask of an engine."""

    info: EngineInfo
    tool_call_parser: ToolCallParser | None  # None: the model has none, so `auto` answers are plain text

    def render_chat(
        self,
        messages: Sequence[dict[str, Any]],
        chat_template: str | None,
        tools: Sequence[dict[str, Any]] | None = None,
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        add_special_tokens: bool = False,
    ) -> list[int]:
        """Apply the model's (or the given) chat template, with the tools offered, and return the prompt's ids.
        The defaults render a chat request's prompt; `/tokenize` may leave the last message open instead
        (`continue_final_message`) or add the tokenizer's special tokens on top of the template's."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of a plain-text prompt, as the engine would tokenize it."""

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of token ids."""

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        """The tokenizer's own string of each token id (byte-level symbols such as `Ġthe`), as `/tokenize` shows
        them."""

    def prepare_options(self, options: SamplingOptions) -> PreparedOptions:
        """The engine's form of these options; raise `EngineRequestError` if the engine would refuse them (before any
        response starts)."""

    def generate(
        self,
        prompt: list[int],
        options: PreparedOptions,
        request_id: str,
        *,
        adapter: str | None = None,
        arrived: float | None = None,
    ) -> AsyncIterator[EngineStep]:
        """Stream the request's steps, through the named LoRA adapter if any; leaving the iterator early aborts
        the request in the engine. `arrived` (wall clock) is when the engine's latency metrics start, as vLLM's
        server starts them before rendering and tokenising. Raises `EngineDeadError` when the engine is gone."""

    async def load_adapters(self) -> None:
        """Load the configured LoRA adapters before serving, so a bad one fails start-up rather than a request."""

    async def check_health(self) -> None:
        """Raise when the engine can no longer serve."""

    def shutdown(self) -> None:
        """Release the engine's processes and memory."""
