"""`BaseServingEngine`: the one request path every protocol follows.

parse -> check the model -> `create_prompt` -> sampling options -> run on the engine -> stream or collect ->
format. A protocol subclass fills in the steps that differ (the prompt, the chunk and response shapes); a
plugin overrides a step, never the path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from vif.runtime.app.metrics import RuntimeMetrics
from vif.runtime.engine.types import (
    ChoiceDelta,
    EngineClient,
    EngineRequestError,
    EngineStep,
    SamplingOptions,
    TokenLogprob,
)
from vif.runtime.protocols.common import SamplingFields
from vif.runtime.protocols.errors import APIError, from_validation_error, model_not_found
from vif.runtime.serving.streams import SSE_DONE, merge, sse_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """The model as clients see it: its name and how chat prompts are rendered and answered."""

    name: str
    chat_template: str | None = None
    response_role: str = "assistant"


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
class RequestContext:
    """Everything the formatting steps need to know about one request."""

    request_id: str
    created: int
    request: Any
    prompts: list[PromptInput]
    options: list[SamplingOptions]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_logprobs: dict[int, tuple[TokenLogprob | None, ...]] = field(default_factory=dict)
    text_offsets: dict[int, int] = field(default_factory=dict)

    def usage(self) -> dict[str, int]:
        total = self.prompt_tokens + self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": total,
        }


class BaseServingEngine:
    """Serves one protocol for one model. Subclasses set `protocol`, `request_model` and the format steps."""

    protocol: ClassVar[str]
    request_model: ClassVar[type[SamplingFields]]
    id_prefix: ClassVar[str] = "req"

    def __init__(self, engine: EngineClient, model: ServedModel, metrics: RuntimeMetrics) -> None:
        self.engine = engine
        self.model = model
        self.metrics = metrics

    async def __call__(self, raw_request: Request) -> Response:
        try:
            return await self.handle(raw_request)
        except EngineRequestError as exc:
            return self.create_error_response(str(exc), code="invalid_prompt")
        except APIError as exc:
            return self.create_error_response(
                exc.message, status=exc.status, err_type=exc.type, param=exc.param, code=exc.code
            )

    async def handle(self, raw_request: Request) -> Response:
        """The fixed request path."""
        request = self.parse_request(await _read_json(raw_request))
        self.check_model(request)
        prompts = self.create_prompt(request, raw_request)
        ctx = RequestContext(
            request_id=f"{self.id_prefix}-{raw_request.state.request_id}",
            created=int(time.time()),
            request=request,
            prompts=prompts,
            options=[self.create_sampling_options(request, p) for p in prompts],
        )
        if request.stream:
            return StreamingResponse(self._stream(ctx), media_type="text/event-stream")
        results = await _cancel_on_disconnect(raw_request, self._collect(ctx))
        return Response(orjson.dumps(self.format_response(ctx, results)), media_type="application/json")

    # Steps a subclass or plugin may override -------------------------------------------------------------

    def parse_request(self, body: Any) -> Any:
        try:
            return self.request_model.model_validate(body)
        except ValidationError as exc:
            raise from_validation_error(exc) from None

    def check_model(self, request: Any) -> None:
        if request.model is not None and request.model != self.model.name:
            raise model_not_found(request.model)

    def create_prompt(self, request: Any, raw_request: Request) -> list[PromptInput]:
        raise NotImplementedError

    def create_sampling_options(self, request: Any, prompt: PromptInput) -> SamplingOptions:
        """Sampling options with the output limit checked against the context the prompt leaves."""
        return SamplingOptions(
            max_tokens=self.check_length(prompt, request.output_limit()),
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            stop=request.stop_list(),
            seed=request.seed,
        )

    def format_chunks(self, ctx: RequestContext, choice: ChoiceDelta, first: bool) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def format_stream_end(self, ctx: RequestContext) -> Iterable[dict[str, Any]]:
        return ()

    def format_response(self, ctx: RequestContext, results: dict[int, ChoiceResult]) -> dict[str, Any]:
        raise NotImplementedError

    def create_error_response(
        self,
        message: str,
        *,
        status: int = 400,
        err_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> Response:
        body = APIError(message, status=status, type=err_type, param=param, code=code).body()
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    # The path itself ---------------------------------------------------------------------------------------

    def check_length(self, prompt: PromptInput, requested: int | None) -> int:
        limit = self.engine.info.max_model_len
        room = limit - len(prompt.token_ids)
        if room <= 0 or (requested is not None and requested > room):
            asked = f", {requested} in the completion" if requested is not None else ""
            raise APIError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(prompt.token_ids) + (requested or 0)} tokens ({len(prompt.token_ids)} in the prompt{asked}). "
                "Please reduce the length of the prompt or the completion.",
                param="max_tokens" if room > 0 else "prompt",
                code="context_length_exceeded",
            )
        return requested or room

    async def _steps(self, ctx: RequestContext) -> AsyncIterator[ChoiceDelta]:
        """Every choice delta of every prompt, re-indexed `prompt_index * n + choice`, with usage and TTFT."""
        # The client's X-Request-Id is not unique (retries reuse it); the engine id must be, or an abort for
        # one request would stop every request sharing it.
        unique = uuid.uuid4().hex[:8]
        streams = [
            self.engine.generate(p.token_ids, o, f"{ctx.request_id}-{i}-{unique}")
            for i, (p, o) in enumerate(zip(ctx.prompts, ctx.options, strict=True))
        ]
        started, first_token = time.perf_counter(), True
        counted: set[int] = set()
        step: EngineStep
        # aclosing: a caller that leaves early closes the engine streams now (aborting them), not at GC time
        async with aclosing(merge(streams)) as merged:
            async for prompt_index, step in merged:
                if prompt_index not in counted:
                    counted.add(prompt_index)
                    ctx.prompt_tokens += step.prompt_tokens
                if step.prompt_logprobs is not None:
                    ctx.prompt_logprobs[prompt_index] = step.prompt_logprobs
                n = ctx.options[prompt_index].n
                for choice in step.choices:
                    if first_token and choice.token_count:
                        first_token = False
                        self.metrics.observe_first_token(self.protocol, time.perf_counter() - started)
                    ctx.completion_tokens += choice.token_count
                    yield _reindex(choice, prompt_index * n + choice.index)
        self.metrics.count_tokens(self.protocol, ctx.prompt_tokens, ctx.completion_tokens)

    async def _collect(self, ctx: RequestContext) -> dict[int, ChoiceResult]:
        results: dict[int, ChoiceResult] = {}
        async with aclosing(self._steps(ctx)) as steps:
            async for choice in steps:
                result = results.setdefault(choice.index, ChoiceResult())
                result.text.append(choice.text)
                result.tokens += choice.token_count
                result.finish_reason = choice.finish_reason or result.finish_reason
                if choice.logprobs:
                    result.logprobs.extend(choice.logprobs)
        return results

    async def _stream(self, ctx: RequestContext) -> AsyncIterator[bytes]:
        seen: set[int] = set()
        try:
            async with aclosing(self._steps(ctx)) as steps:
                async for choice in steps:
                    first = choice.index not in seen
                    seen.add(choice.index)
                    for chunk in self.format_chunks(ctx, choice, first):
                        yield sse_event(chunk)
            for chunk in self.format_stream_end(ctx):
                yield sse_event(chunk)
        except (APIError, EngineRequestError) as exc:
            error = exc if isinstance(exc, APIError) else APIError(str(exc), code="invalid_prompt")
            self.metrics.count_error(self.protocol, error.type)
            yield sse_event(error.body())
        except Exception:
            log.exception("stream %s failed", ctx.request_id)
            self.metrics.count_error(self.protocol, "internal_error")
            yield sse_event(APIError("Internal server error", status=500, type="internal_error").body())
        yield SSE_DONE


def _reindex(choice: ChoiceDelta, index: int) -> ChoiceDelta:
    if choice.index == index:
        return choice
    return ChoiceDelta(index, choice.text, choice.token_count, choice.finish_reason, choice.logprobs)


async def _read_json(raw_request: Request) -> Any:
    try:
        return orjson.loads(await raw_request.body())
    except orjson.JSONDecodeError:
        raise APIError("The request body is not valid JSON.", code="invalid_json") from None
    except ClientDisconnect:
        raise APIError("The client disconnected while sending the request.", code="client_disconnected") from None


async def _cancel_on_disconnect(raw_request: Request, work: Any) -> Any:
    """Await `work`, cancelling it (and so aborting its engine requests) if the client goes away first."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await raw_request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise APIError("The client disconnected.", status=499, code="client_disconnected")
    return task.result()
