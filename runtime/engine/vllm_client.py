"""`EngineClient` over vLLM's in-process async engine (`AsyncLLM`), using only its engine-level API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import jinja2
from vllm import SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.exceptions import VLLMValidationError
from vllm.inputs import tokens_input
from vllm.lora.request import LoRARequest
from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError as VLLMEngineDeadError

from vif.runtime.engine.tool_parser import VLLMToolCallParser
from vif.runtime.engine.types import (
    ChoiceDelta,
    EngineDeadError,
    EngineInfo,
    EngineRequestError,
    EngineStep,
    PreparedOptions,
    SamplingOptions,
    StructuredOutput,
    TokenLogprob,
    ToolCallParser,
    finite_logprob,
)
from vif.runtime.shared.tracing import current_trace_headers

log = logging.getLogger(__name__)

# vLLM names the offending parameter for most of its checks; these it only describes.
_PARAM_BY_MESSAGE = {"n must be 1": "n", "stop cannot": "stop", "prompt_logprobs": "logprobs"}


class VLLMEngineClient:
    """Turns vif's sampling options into vLLM requests and vLLM's outputs into `EngineStep`s."""

    def __init__(
        self, engine: AsyncLLM, adapters: Mapping[str, str] | None = None, tool_call_parser: str | None = None
    ) -> None:
        self._engine = engine
        # vLLM tells adapters apart by an int id: one per name, fixed for the process by the config's order.
        self._adapters = {
            name: LoRARequest(name, lora_id, path) for lora_id, (name, path) in enumerate((adapters or {}).items(), 1)
        }
        self._tokenizer = engine.get_tokenizer()
        config = engine.model_config
        self.info = EngineInfo(
            max_model_len=int(config.max_model_len),
            vocab_size=int(config.get_vocab_size()),
            max_num_seqs=int(engine.vllm_config.scheduler_config.max_num_seqs),
            max_token_chars=max(len(token) for token in self._tokenizer.get_vocab()),
        )
        self.tool_call_parser: ToolCallParser | None = (
            VLLMToolCallParser(tool_call_parser, self._tokenizer) if tool_call_parser else None
        )

    @classmethod
    def from_engine_args(
        cls,
        engine_args: AsyncEngineArgs,
        adapters: Mapping[str, str] | None = None,
        tool_call_parser: str | None = None,
    ) -> VLLMEngineClient:
        """Start the engine (its core runs in a child process); blocks until the model is loaded. `adapters` maps
        LoRA adapter names to their directories (the engine needs `enable_lora`); `tool_call_parser` names the
        vLLM parser that reads tool calls in free answers."""
        engine = AsyncLLM.from_engine_args(engine_args)
        try:
            return cls(engine, adapters, tool_call_parser)
        except BaseException:
            engine.shutdown()
            raise

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
        try:
            text = self._tokenizer.apply_chat_template(
                list(messages),
                chat_template=chat_template,
                tools=list(tools) if tools else None,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                tokenize=False,
            )
        except (jinja2.TemplateError, TypeError) as exc:
            # raise_exception('System role not supported'), or a template that concatenates a field it lacks
            raise EngineRequestError(f"The chat template refused the messages: {exc}") from None
        except ValueError as exc:
            if not continue_final_message:
                raise
            # transformers cannot find the last message's text in the rendered prompt, so cannot leave it open
            message = f"The chat template refused the messages: {exc}"
            raise EngineRequestError(message, "continue_final_message") from None
        # Rendered, then tokenised as vLLM's chat path does: the template already wrote its special tokens.
        return self.encode(text, add_special_tokens)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(token_ids))

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        return list(self._tokenizer.convert_ids_to_tokens(list(token_ids)))

    def prepare_options(self, options: SamplingOptions) -> PreparedOptions:
        """vLLM's `SamplingParams`, through vLLM's own checks as its engine runs them when a request is added: the
        parameters' ranges, token ids against the vocabulary, and a structured-output constraint compiled by the
        backend."""
        config = self._engine.vllm_config
        try:
            params = _sampling_params(options)  # its constructor checks the ranges
            params.verify(
                config.model_config, config.speculative_config, config.structured_outputs_config, self._tokenizer
            )
        except VLLMValidationError as exc:
            raise _request_error(exc) from None
        except ValueError as exc:  # a few backend checks raise a plain ValueError
            raise EngineRequestError(str(exc)) from None
        return PreparedOptions(options, params)

    async def generate(
        self,
        prompt: list[int],
        options: PreparedOptions,
        request_id: str,
        *,
        adapter: str | None = None,
        arrived: float | None = None,
    ) -> AsyncIterator[EngineStep]:
        params = options.native
        if not isinstance(params, SamplingParams):
            raise TypeError("generate takes the options this client's prepare_options returned")
        lora = None if adapter is None else self._adapters[adapter]
        finished = False
        try:
            # Token ids as vLLM's own renderer hands them over: no second rendering in the engine client, and
            # the arrival time its latency metrics start from.
            engine_prompt = tokens_input(prompt)
            if arrived is not None:
                engine_prompt["arrival_time"] = arrived
            # the request's span, for vLLM's llm_request span to join (vLLM refuses them with tracing off)
            traced = current_trace_headers() if self._engine.observability_config.otlp_traces_endpoint else None
            async for output in self._engine.generate(
                engine_prompt, params, request_id, lora_request=lora, trace_headers=traced
            ):
                finished = output.finished
                yield _engine_step(output, len(prompt), options.options)
        except VLLMEngineDeadError:
            finished = True  # nothing to abort: the engine is gone
            raise EngineDeadError("The engine stopped; this replica can no longer serve.") from None
        except VLLMValidationError as exc:
            raise _request_error(exc) from None
        finally:
            if not finished:  # the caller left early (client gone): free the engine at once, not at GC time
                await self._engine.abort(request_id)
                log.info("aborted engine request %s", request_id)

    async def load_adapters(self) -> None:
        # vLLM would otherwise load an adapter in the engine core's step, where a failure stops the engine;
        # add_lora fails on its own (a bad file, a rank above max_lora_rank), so start-up fails instead.
        for lora in self._adapters.values():
            await self._engine.add_lora(lora)
            log.info("LoRA adapter %s loaded from %s", lora.lora_name, lora.lora_path)

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
        top_k=options.top_k,
        min_p=options.min_p,
        repetition_penalty=options.repetition_penalty,
        min_tokens=options.min_tokens,
        stop_token_ids=list(options.stop_token_ids) or None,
        logit_bias=dict(options.logit_bias) or None,
        skip_special_tokens=options.skip_special_tokens,
        include_stop_str_in_output=options.include_stop_str_in_output,
        structured_outputs=_structured_outputs(options.structured),
        output_kind=RequestOutputKind.DELTA,
    )


def _structured_outputs(structured: StructuredOutput | None) -> StructuredOutputsParams | None:
    if structured is None:
        return None
    if structured.kind == "choice":
        return StructuredOutputsParams(choice=list(structured.value))
    return StructuredOutputsParams(**{structured.kind: structured.value})


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
        top = tuple((lp.decoded_token or "", finite_logprob(lp.logprob)) for lp in ranked[:top_k])
        out.append(TokenLogprob(chosen.decoded_token or "", finite_logprob(chosen.logprob), top))
    return tuple(out)
