"""`EngineClient` over vLLM's in-process async engine (`AsyncLLM`), using only its engine-level API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import jinja2
from vllm import SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.exceptions import VLLMValidationError
from vllm.sampling_params import RequestOutputKind
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError as VLLMEngineDeadError

from vif.runtime.engine.types import (
    ChoiceDelta,
    EngineDeadError,
    EngineInfo,
    EngineRequestError,
    EngineStep,
    SamplingOptions,
    TokenLogprob,
)

log = logging.getLogger(__name__)

# vLLM names the offending parameter for most of its checks; these it only describes.
_PARAM_BY_MESSAGE = {"n must be 1": "n", "stop cannot": "stop", "prompt_logprobs": "logprobs"}


class VLLMEngineClient:
    """Turns vif's sampling options into vLLM requests and vLLM's outputs into `EngineStep`s."""

    def __init__(self, engine: AsyncLLM) -> None:
        self._engine = engine
        self._tokenizer = engine.get_tokenizer()
        config = engine.model_config
        self.info = EngineInfo(
            max_model_len=int(config.max_model_len),
            vocab_size=int(config.get_vocab_size()),
            max_num_seqs=int(engine.vllm_config.scheduler_config.max_num_seqs),
            max_token_chars=max(len(token) for token in self._tokenizer.get_vocab()),
        )

    @classmethod
    def from_engine_args(cls, engine_args: AsyncEngineArgs) -> VLLMEngineClient:
        """Start the engine (its core runs in a child process); blocks until the model is loaded."""
        return cls(AsyncLLM.from_engine_args(engine_args))

    def render_chat(self, messages: Sequence[dict[str, str]], chat_template: str | None) -> list[int]:
        try:
            encoded = self._tokenizer.apply_chat_template(
                list(messages), chat_template=chat_template, add_generation_prompt=True, tokenize=True
            )
        except jinja2.TemplateError as exc:  # e.g. the template's raise_exception('System role not supported')
            raise EngineRequestError(f"The chat template refused the messages: {exc}") from None
        # transformers 5 returns a BatchEncoding; older versions a plain list.
        return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text))

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(token_ids))

    def check_options(self, options: SamplingOptions) -> None:
        _sampling_params(options)

    async def generate(self, prompt: list[int], options: SamplingOptions, request_id: str) -> AsyncIterator[EngineStep]:
        params = _sampling_params(options)
        finished = False
        try:
            async for output in self._engine.generate({"prompt_token_ids": prompt}, params, request_id):
                finished = output.finished
                yield _engine_step(output, len(prompt), options)
        except VLLMEngineDeadError:
            finished = True  # nothing to abort: the engine is gone
            raise EngineDeadError("The engine stopped; this replica can no longer serve.") from None
        except VLLMValidationError as exc:
            raise _request_error(exc) from None
        finally:
            if not finished:  # the caller left early (client gone): free the engine at once, not at GC time
                await self._engine.abort(request_id)
                log.info("aborted engine request %s", request_id)

    async def check_health(self) -> None:
        try:
            await self._engine.check_health()
        except VLLMEngineDeadError:
            raise EngineDeadError("The engine stopped; this replica can no longer serve.") from None

    def shutdown(self) -> None:
        self._engine.shutdown()


def _request_error(exc: VLLMValidationError) -> EngineRequestError:
    message = str(exc.args[0]) if exc.args else str(exc)
    param = exc.parameter or next((p for key, p in _PARAM_BY_MESSAGE.items() if message.startswith(key)), None)
    return EngineRequestError(message, param)


def _sampling_params(options: SamplingOptions) -> SamplingParams:
    """vLLM's parameters; its checks run here, so a refusal is an `EngineRequestError` naming the parameter."""
    try:
        return _build_sampling_params(options)
    except VLLMValidationError as exc:
        raise _request_error(exc) from None


def _build_sampling_params(options: SamplingOptions) -> SamplingParams:
    return SamplingParams(
        n=options.n,
        temperature=options.temperature,
        top_p=options.top_p,
        max_tokens=options.max_tokens,
        stop=list(options.stop) or None,
        seed=options.seed,
        presence_penalty=options.presence_penalty,
        frequency_penalty=options.frequency_penalty,
        logprobs=options.logprobs,
        prompt_logprobs=options.prompt_logprobs,
        ignore_eos=options.ignore_eos,
        output_kind=RequestOutputKind.DELTA,
    )


def _engine_step(output: Any, prompt_tokens: int, options: SamplingOptions) -> EngineStep:
    choices = tuple(
        ChoiceDelta(
            index=c.index,
            text=c.text,
            token_count=len(c.token_ids),
            finish_reason=c.finish_reason,
            logprobs=_logprobs(c.token_ids, c.logprobs, options.logprobs),
        )
        for c in output.outputs
    )
    # vLLM sends the prompt's logprobs with the first step and an empty list after it.
    prompt_logprobs = _logprobs(output.prompt_token_ids or [], output.prompt_logprobs or None, options.prompt_logprobs)
    return EngineStep(prompt_tokens, choices, output.finished, prompt_logprobs)


def _logprobs(
    token_ids: Sequence[int], positions: Sequence[dict[int, Any] | None] | None, top_k: int | None
) -> tuple[TokenLogprob | None, ...] | None:
    """vLLM gives, per position, a dict of token id -> Logprob: the chosen token plus the top `k`."""
    if positions is None or top_k is None:
        return None
    out: list[TokenLogprob | None] = []
    for token_id, candidates in zip(token_ids, positions, strict=False):
        if candidates is None:  # the first prompt token has no logprob
            out.append(None)
            continue
        chosen = candidates[token_id]
        ranked = sorted((lp for lp in candidates.values() if lp.rank is not None), key=lambda lp: lp.rank)
        top = tuple((lp.decoded_token or "", lp.logprob) for lp in ranked[:top_k])
        out.append(TokenLogprob(chosen.decoded_token or "", chosen.logprob, top))
    return tuple(out)
