"""`BaseServingEngine`: the one request path every protocol follows.

`prepare` does everything that can refuse a request (parse, check the model, bound the prompt's size, build
the prompt, build and check the sampling options) before any byte of a response goes out; `respond` or
`stream` then runs it on the engine and formats the result. Serving classes return data or raise `APIError`;
the app layer alone turns those into HTTP responses. A protocol subclass supplies the steps that differ (the
prompt, the chunk and response shapes); a plugin overrides a step, never the path.
"""

from __future__ import annotations

import math
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Iterable, Sequence
from contextlib import aclosing
from typing import Any, ClassVar, Generic

from pydantic import ValidationError

from vif.runtime.engine.types import (
    ChoiceDelta,
    EngineClient,
    EngineRequestError,
    EngineStep,
    PreparedOptions,
    SamplingOptions,
    StructuredOutput,
)
from vif.runtime.protocols.common import SamplingFields
from vif.runtime.protocols.errors import APIError, from_validation_error, model_not_found
from vif.runtime.protocols.structured import Constraint
from vif.runtime.serving.checks import check_token_ids, parse_json
from vif.runtime.serving.context import ChoiceResult, PromptInput, RequestContext, RequestT, ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.serving.streams import merge


class BaseServingEngine(ABC, Generic[RequestT]):
    """Serves one protocol for one model. Subclasses set `protocol`, `request_model` and the format steps."""

    protocol: ClassVar[str]
    request_model: ClassVar[type[SamplingFields]]
    id_prefix: ClassVar[str] = "req"
    prompt_param: ClassVar[str] = "prompt"  # the field a too-long prompt is blamed on

    def __init__(self, engine: EngineClient, model: ServedModel, metrics: RuntimeMetrics) -> None:
        self.engine = engine
        self.model = model
        self.metrics = metrics

    # The request path, as the app layer drives it ----------------------------------------------------------

    def prepare(self, body: bytes, request_id: str) -> RequestContext[RequestT]:
        """Parse and check a request body into a context ready to run. Synchronous and CPU-bound (parsing,
        the chat template, the tokenizer): the app runs it on its worker thread, off the event loop."""
        request = self.parse_request(parse_json(body))
        served = self.check_model(request)
        self.check_prompt_size(request)
        try:
            prompts = self.create_prompt(request)
            options = [self.create_sampling_options(request, p) for p in prompts]
        except EngineRequestError as exc:
            raise _refused(exc) from None
        prepared = self.prepare_options(request, options)
        return RequestContext(f"{self.id_prefix}-{request_id}", int(time.time()), request, prompts, prepared, served)

    async def respond(self, ctx: RequestContext[RequestT]) -> dict[str, Any]:
        """The whole response body (the non-streaming path)."""
        results: dict[int, ChoiceResult] = {}
        async with aclosing(self._steps(ctx)) as steps:
            async for choice in steps:
                result = results.setdefault(choice.index, ChoiceResult())
                result.text.append(choice.text)
                result.tokens += choice.token_count
                result.finish_reason = choice.finish_reason or result.finish_reason
                if choice.logprobs:
                    result.logprobs.extend(choice.logprobs)
        return self.format_response(ctx, results)

    async def stream(self, ctx: RequestContext[RequestT]) -> AsyncGenerator[dict[str, Any]]:
        """The response as chunks (the streaming path); errors on the way are raised, not formatted."""
        seen: set[int] = set()
        async with aclosing(self._steps(ctx)) as steps:
            async for choice in steps:
                first = choice.index not in seen
                seen.add(choice.index)
                for chunk in self.format_chunks(ctx, choice, first):
                    yield chunk
        for chunk in self.format_stream_end(ctx):
            yield chunk

    # Steps a subclass or plugin may override -------------------------------------------------------------

    def parse_request(self, body: Any) -> RequestT:
        try:
            return self.request_model.model_validate(body)  # type: ignore[return-value]
        except ValidationError as exc:
            raise from_validation_error(exc) from None

    def check_model(self, request: RequestT) -> str:
        """The name the request is served under: the base model's (also when `model` is left out) or one of its
        LoRA adapters'; any other name is a 404."""
        if request.model is None:
            return self.model.name
        if request.model != self.model.name and request.model not in self.model.adapters:
            raise model_not_found(request.model)
        return request.model

    def min_prompt_tokens(self, request: RequestT) -> list[int]:
        """A lower bound on each prompt's token count, known without tokenising: a token is at most
        `max_token_chars` characters long."""
        return [math.ceil(chars / self.engine.info.max_token_chars) for chars in request.text_lengths()]

    @abstractmethod
    def create_prompt(self, request: RequestT) -> list[PromptInput]:
        """The engine prompts of a request (token ids, and the text where it may be echoed)."""

    def create_sampling_options(self, request: RequestT, prompt: PromptInput) -> SamplingOptions:
        """Sampling options with the output limit checked against the context the prompt leaves."""
        constraint = self.create_constraint(request)
        return SamplingOptions(
            max_tokens=self.check_length(prompt, request.output_limit()),
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            stop=request.stop_list(),
            seed=request.seed,
            top_k=request.top_k or 0,
            min_p=request.min_p or 0.0,
            repetition_penalty=request.repetition_penalty or 1.0,
            min_tokens=request.min_tokens,
            stop_token_ids=tuple(request.stop_token_ids or ()),
            logit_bias=tuple((int(token), bias) for token, bias in (request.logit_bias or {}).items()),
            skip_special_tokens=request.skip_special_tokens,
            include_stop_str_in_output=request.include_stop_str_in_output,
            structured=None if constraint is None else StructuredOutput(constraint.kind, constraint.value),
        )

    def create_constraint(self, request: RequestT) -> Constraint | None:
        """The structured-output constraint on the answer (chat adds the one a tool choice implies)."""
        return request.constraint()

    @abstractmethod
    def format_chunks(
        self, ctx: RequestContext[RequestT], choice: ChoiceDelta, first: bool
    ) -> Iterable[dict[str, Any]]:
        """The stream chunks for one step of one choice."""

    def format_stream_end(self, ctx: RequestContext[RequestT]) -> Iterable[dict[str, Any]]:
        return ()

    @abstractmethod
    def format_response(self, ctx: RequestContext[RequestT], results: dict[int, ChoiceResult]) -> dict[str, Any]:
        """The non-streamed response body."""

    def create_error_response(self, error: APIError) -> dict[str, Any]:
        """The body of an error, for an HTTP error response and a streamed error event alike."""
        return error.body()

    # Checks the steps use ----------------------------------------------------------------------------------

    def check_prompt_size(self, request: RequestT) -> None:
        """Refuse a prompt that cannot fit the context before spending any time on its template or tokens."""
        limit = self.engine.info.max_model_len
        for tokens in self.min_prompt_tokens(request):
            if tokens >= limit:
                raise APIError(
                    f"This model's maximum context length is {limit} tokens. However, your prompt has at least "
                    f"{tokens} tokens. Please reduce the length of the prompt.",
                    param=self.prompt_param,
                    code="context_length_exceeded",
                )

    def prepare_options(self, request: RequestT, options: list[SamplingOptions]) -> list[PreparedOptions]:
        """The engine's form of each prompt's options, through its own checks, before anything starts. It names no
        parameter when it cannot compile an output constraint, so that error is blamed on the field the
        constraint came from."""
        prepared = []
        for option in options:
            try:
                prepared.append(self.engine.prepare_options(option))
            except EngineRequestError as exc:
                constraint = self.create_constraint(request)
                if exc.param is None and constraint is not None and option.structured is not None:
                    exc.param = constraint.param
                raise _refused(exc) from None
        return prepared

    def check_token_ids(self, token_ids: Sequence[int], param: str) -> None:
        """Token ids must name tokens of the vocabulary: checked before anything decodes or echoes them."""
        check_token_ids(token_ids, self.engine.info.vocab_size, param)

    def check_length(self, prompt: PromptInput, requested: int | None) -> int:
        limit = self.engine.info.max_model_len
        room = limit - len(prompt.token_ids)
        if room <= 0 or (requested is not None and requested > room):
            asked = f", {requested} in the completion" if requested is not None else ""
            raise APIError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(prompt.token_ids) + (requested or 0)} tokens ({len(prompt.token_ids)} in the prompt{asked}). "
                "Please reduce the length of the prompt or the completion.",
                param="max_tokens" if room > 0 else self.prompt_param,
                code="context_length_exceeded",
            )
        return requested or room

    # The engine side of the path ---------------------------------------------------------------------------

    async def _steps(self, ctx: RequestContext[RequestT]) -> AsyncGenerator[ChoiceDelta]:
        """Every choice delta of every prompt, re-indexed `prompt_index * n + choice`, with usage and TTFT."""
        # The client's X-Request-Id is not unique (retries reuse it); the engine id must be, or an abort for
        # one request would stop every request sharing it.
        unique = uuid.uuid4().hex[:8]
        adapter = self.model.adapter(ctx.model)
        streams = [
            self.engine.generate(p.token_ids, o, f"{ctx.request_id}-{i}-{unique}", adapter=adapter, arrived=ctx.arrived)
            for i, (p, o) in enumerate(zip(ctx.prompts, ctx.prepared, strict=True))
        ]
        started, first_token = time.perf_counter(), True
        counted: set[int] = set()
        step: EngineStep
        try:
            # aclosing: a caller that leaves early closes the engine streams now (aborting them), not at GC time
            async with aclosing(merge(streams)) as merged:
                async for prompt_index, step in merged:
                    if prompt_index not in counted:
                        counted.add(prompt_index)
                        ctx.prompt_tokens += step.prompt_tokens
                    if step.prompt_logprobs is not None:
                        ctx.prompt_logprobs[prompt_index] = step.prompt_logprobs
                    n = ctx.prepared[prompt_index].options.n
                    for choice in step.choices:
                        if first_token and choice.token_count:
                            first_token = False
                            self.metrics.observe_first_token(self.protocol, time.perf_counter() - started, ctx.model)
                        ctx.completion_tokens += choice.token_count
                        yield _reindex(choice, prompt_index * n + choice.index)
        except EngineRequestError as exc:
            raise _refused(exc) from None
        self.metrics.count_tokens(self.protocol, ctx.prompt_tokens, ctx.completion_tokens, ctx.model)


def _refused(exc: EngineRequestError) -> APIError:
    return APIError(str(exc), param=exc.param, code="invalid_request" if exc.param else "invalid_prompt")


def _reindex(choice: ChoiceDelta, index: int) -> ChoiceDelta:
    if choice.index == index:
        return choice
    return ChoiceDelta(index, choice.text, choice.token_count, choice.finish_reason, choice.logprobs)
