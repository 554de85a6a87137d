"""A scripted engine for fast unit tests of the request path. It never stands in for the real engine in
integration tests (tests/runtime/integration/ runs vLLM)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import jinja2

from vif.runtime.engine.types import (
    ChoiceDelta,
    EngineInfo,
    EngineRequestError,
    EngineStep,
    PreparedOptions,
    SamplingOptions,
    TokenLogprob,
    ToolCallParser,
)


class FakeEngine:
    """Tokens are characters; the reply is `reply` word by word, or endless words with `ignore_eos`. Through a
    LoRA adapter the reply's words are upper-case."""

    def __init__(self, reply: str = "Paris is the capital.", max_model_len: int = 256, delay: float = 0.0) -> None:
        self.info = EngineInfo(max_model_len=max_model_len, vocab_size=0x110000, max_num_seqs=8, max_token_chars=1)
        self.reply = reply
        self.delay = delay
        self.requests: list[tuple[list[int], SamplingOptions, str]] = []
        self.prepared: list[SamplingOptions] = []  # every option set prepare_options accepted
        self.adapters: list[str | None] = []  # each request's adapter, in the order of `requests`
        self.arrivals: list[float | None] = []  # each request's arrival time, in the order of `requests`
        self.adapters_loaded = False
        self.aborted: list[str] = []  # requests whose stream was left before it finished
        self.produced: dict[str, int] = {}  # steps yielded so far, by request id
        self.healthy = True
        self.shut_down = False
        self.fail_with: Exception | None = None
        self.fail_after_steps = 0  # with fail_with: how many steps succeed first
        self.bos_token_id: int | None = None  # when set, prepended wherever special tokens are added
        self.tool_call_parser: ToolCallParser | None = None

    def render_chat(
        self,
        messages: Sequence[dict[str, Any]],
        chat_template: str | None,
        tools: Sequence[dict[str, Any]] | None = None,
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,  # the fake template closes no message: nothing to leave open
        add_special_tokens: bool = False,
    ) -> list[int]:
        if any(m["role"] == "developer" for m in messages):
            raise EngineRequestError("The chat template refused the messages: no developer role")
        if chat_template is not None:  # rendered as the real engine does, so a template's own errors show
            try:
                text = (
                    jinja2.Environment()
                    .from_string(chat_template)
                    .render(messages=messages, add_generation_prompt=add_generation_prompt)
                )
            except jinja2.TemplateError as exc:
                raise EngineRequestError(f"The chat template refused the messages: {exc}") from None
            return self.encode(text, add_special_tokens)
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        text += "<assistant>" if add_generation_prompt else ""
        return self.encode(text, add_special_tokens)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        bos = [self.bos_token_id] if add_special_tokens and self.bos_token_id is not None else []
        return bos + [ord(c) for c in text]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t) for t in token_ids)

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        return [chr(t) for t in token_ids]

    def prepare_options(self, options: SamplingOptions) -> PreparedOptions:
        if options.n > 1 and options.temperature == 0:  # as vLLM refuses it
            raise EngineRequestError(f"n must be 1 when using greedy sampling, got {options.n}.", "n")
        self.prepared.append(options)
        return PreparedOptions(options, native=self)

    async def generate(
        self,
        prompt: list[int],
        prepared: PreparedOptions,
        request_id: str,
        *,
        adapter: str | None = None,
        arrived: float | None = None,
    ) -> AsyncIterator[EngineStep]:
        if prepared.native is not self:  # as the real client: only options this engine prepared
            raise TypeError("generate takes the options this engine's prepare_options returned")
        options = prepared.options
        self.requests.append((prompt, options, request_id))
        self.arrivals.append(arrived)
        self.adapters.append(adapter)
        if self.fail_with is not None and not self.fail_after_steps:
            raise self.fail_with
        words = (self.reply.upper() if adapter else self.reply).split(" ")
        finished = False
        try:
            for step in range(options.max_tokens):
                if self.fail_with is not None and step == self.fail_after_steps:
                    raise self.fail_with
                if self.delay:
                    await asyncio.sleep(self.delay)
                at_end = step == len(words) - 1 and not options.ignore_eos
                last = at_end or step == options.max_tokens - 1
                word = words[step % len(words)]
                text = word if step == 0 else " " + word
                reason = None if not last else ("stop" if at_end else "length")
                logprobs = None
                if options.logprobs is not None:
                    logprobs = (
                        TokenLogprob(text, -0.5, tuple((f"alt{i}", -1.0 - i) for i in range(options.logprobs))),
                    )
                choices = tuple(ChoiceDelta(i, text, 1, reason, logprobs) for i in range(options.n))
                prompt_logprobs = None
                if step == 0 and options.prompt_logprobs is not None:
                    prompt_logprobs = (None, *(TokenLogprob(chr(t), -2.0) for t in prompt[1:]))
                finished = last
                self.produced[request_id] = step + 1
                yield EngineStep(len(prompt), choices, last, prompt_logprobs)
                if last:
                    return
        finally:
            if not finished:
                self.aborted.append(request_id)

    async def load_adapters(self) -> None:
        self.adapters_loaded = True

    async def check_health(self) -> None:
        if not self.healthy:
            raise RuntimeError("engine dead")

    def shutdown(self) -> None:
        self.shut_down = True
