"""The inference routes: read the body, prepare the request, take a concurrency slot, answer or stream.

Everything that can refuse a request happens before the status line: the serving class's `prepare`, the
concurrency slot and, for streams, the engine's admission of the request (the first chunk is awaited first).
The slot goes back when the engine is done, not when the client has read the answer (`limiter.Slot`): a stream's
chunks are read from the engine as they come and queued for a client that reads more slowly.
Every body is prepared on one worker thread, as vLLM's server renders and tokenises on one, after a child
process has vetted a very large one (`body_check.py`): the tokenizer releases the GIL, so a burst of long prompts
(1,024 tokens take ~4.5 ms each) no longer holds up the event loop and every stream on it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import aclosing, suppress
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from vif.runtime.app.body_check import BodyChecker
from vif.runtime.app.errors import JSON_HEADERS, ErrorShape, as_api_error, error_event, plain_shape, send_error
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.app.limiter import SequenceLimiter, Slot
from vif.runtime.app.middleware import header
from vif.runtime.app.response_cache import Directives, ResponseCache, StoredAnswer, cache_key
from vif.runtime.engine.types import EngineDeadError
from vif.runtime.protocols.errors import APIError
from vif.runtime.serving.base import BaseServingEngine
from vif.runtime.serving.context import RequestContext
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.shared.asgi import BodyTimeout, ClientGone, read_body, until_disconnect
from vif.runtime.shared.tracing import Tracing

log = logging.getLogger(__name__)

T = TypeVar("T")
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
SSE_DONE = b"data: [DONE]\n\n"
PIECE_BYTES = 64 << 10  # a whole answer is sent in pieces of this size (uvicorn's write buffer high-water mark)


class InferenceEndpoint:
    """The ASGI endpoint of one protocol."""

    def __init__(
        self,
        protocol: str,
        lifecycle: Lifecycle,
        limiter: SequenceLimiter,
        metrics: RuntimeMetrics,
        pool: Executor,
        checker: BodyChecker,
        body_timeout: float,
        send_timeout: float,
        cache: ResponseCache | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.protocol = protocol
        self.lifecycle = lifecycle
        self.limiter = limiter
        self.metrics = metrics
        self.pool = pool
        self.checker = checker
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self.cache = cache
        self.tracing = tracing or Tracing()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shape: ErrorShape = plain_shape
        try:
            serving = self.lifecycle.serving_for(self.protocol)
            shape = serving.create_error_response
            with self.tracing.span("receive"):
                body = await read_request_body(receive, self.body_timeout)
            with self.tracing.span("prepare"):
                ctx, key = await self._prepare(serving, body, scope)
            scope["state"]["model"] = ctx.model  # the request's metrics carry the name it is served under
            store_as, cached = self._look_up(scope, ctx, key)
            # A cached answer takes no engine sequence; its bytes still count in the budget of unsent answers.
            with self.limiter.slot(0 if cached is not None else ctx.sequences) as slot, self.lifecycle.tracked():
                if cached is not None:
                    answer = cached.renewed(ctx)
                    slot.queued(len(answer))
                    with self.tracing.span("cached"):
                        await self._send_whole(send, answer, slot, [(b"x-vif-cache", b"hit")])
                else:
                    with self.tracing.span("stream" if ctx.stream else "engine") as span:
                        if ctx.stream:
                            await self._stream(serving, ctx, slot, receive, send)
                        else:
                            await self._respond(serving, ctx, slot, receive, send, store_as)
                        if span is not None:
                            span.set_attributes({f"gen_ai.usage.{k}": v for k, v in ctx.usage().items()})
        except asyncio.CancelledError:
            if not self.lifecycle.claim_abort():
                raise
            _uncancel()
            await send_error(scope, send, self.lifecycle.shutdown_error(), shape)
        except ClientGone:
            await send_error(scope, send, APIError("The client disconnected.", status=499, code="client_disconnected"))
        except Exception as exc:
            await send_error(scope, send, self._error(exc), shape)

    async def _prepare(
        self, serving: BaseServingEngine, body: bytes, scope: Scope
    ) -> tuple[RequestContext[Any], bytes | None]:
        """The checked request, and its response cache key (None: not cacheable, or no cache)."""
        arrived = time.time()
        request_id, authorization = scope["state"]["request_id"], header(scope, b"authorization")

        def prepare(raw: bytes) -> tuple[RequestContext[Any], bytes | None]:
            ctx = serving.prepare(raw, request_id=request_id)
            return ctx, (cache_key(self.protocol, ctx, authorization) if self._caching else None)

        ctx, key = await prepare_body(prepare, serving.request_model, body, self.pool, self.checker)
        ctx.arrived = arrived
        return ctx, key

    def _look_up(
        self, scope: Scope, ctx: RequestContext[Any], key: bytes | None
    ) -> tuple[bytes | None, StoredAnswer | None]:
        """The key to store this request's answer under (None: not stored), and its cached answer if there is one.
        A request that may not read the cache counts as `bypass`, though the engine's answer it gets is a miss."""
        if self.cache is None or not self.cache.enabled or key is None:
            return None, None
        directives = Directives.parse(header(scope, b"cache-control"))
        cached = self.cache.get(key) if directives.read else None
        result = "bypass" if not directives.read else "hit" if cached is not None else "miss"
        self.metrics.count_cache_lookup(self.protocol, result, ctx.model)
        return (key if directives.write else None), cached

    async def _respond(
        self,
        serving: BaseServingEngine,
        ctx: RequestContext[Any],
        slot: Slot,
        receive: Receive,
        send: Send,
        store_as: bytes | None,
    ) -> None:
        response = await until_disconnect(receive, serving.respond(ctx))
        body = orjson.dumps(response)
        slot.queued(len(body))
        if slot.may_read_ahead:  # the engine is done; within the budget the client may take its time
            slot.hand_back()
        headers = []
        if self.cache is not None and store_as is not None:
            self.cache.put(store_as, StoredAnswer.of(response))
            headers.append((b"x-vif-cache", b"miss"))
        await self._send_whole(send, body, slot, headers)

    async def _send_whole(self, send: Send, body: bytes, slot: Slot, headers: list[tuple[bytes, bytes]]) -> None:
        """The whole answer in pieces, each within the send timeout: uvicorn takes one message whole into its
        buffer, so a single large one would stay there, uncounted, for a client that reads nothing."""
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *headers]
        try:
            async with asyncio.timeout(self.send_timeout):
                await send({"type": "http.response.start", "status": 200, "headers": headers})
            for start in range(0, len(body), PIECE_BYTES):
                piece = body[start : start + PIECE_BYTES]
                async with asyncio.timeout(self.send_timeout):
                    await send(
                        {"type": "http.response.body", "body": piece, "more_body": start + len(piece) < len(body)}
                    )
                slot.sent(len(piece))
        except TimeoutError:
            log.warning("the client read nothing for %ss: response dropped", self.send_timeout)

    async def _stream(
        self, serving: BaseServingEngine, ctx: RequestContext[Any], slot: Slot, receive: Receive, send: Send
    ) -> None:
        async with aclosing(serving.stream(ctx)) as chunks:
            await EventStream(self, serving.create_error_response, send, receive, ctx.model).run(chunks, slot)

    @property
    def _caching(self) -> bool:
        return self.cache is not None and self.cache.enabled

    def _error(self, exc: BaseException) -> APIError:
        if isinstance(exc, EngineDeadError):
            self.lifecycle.failed(str(exc))
        return as_api_error(exc)


class EventStream:
    """Server-sent events after a 200, ending with `[DONE]`; an error on the way is one error event.

    It stops (closing the chunks, which aborts the engine request) when the client disconnects, when the
    client reads nothing for `send_timeout`, and when the shutdown deadline aborts in-flight requests. The chunks
    are read ahead of a slow client into a queue while the limiter's budget for unsent answers has room, so the
    engine request ends when the engine is done and the slot is handed back then; past the budget the stream goes
    at its client's pace, one event ahead, as if nothing were read ahead.
    """

    def __init__(
        self, endpoint: InferenceEndpoint, shape: ErrorShape, send: Send, receive: Receive, model: str | None = None
    ) -> None:
        self.endpoint = endpoint
        self.shape = shape
        self.send = send
        self.receive = receive
        self.model = model

    async def run(self, chunks: AsyncIterator[dict[str, Any]], slot: Slot) -> None:
        """Errors before the first chunk (the engine refusing the request) are raised, for an HTTP error."""
        task = asyncio.current_task()
        assert task is not None
        gone = started = False

        async def watch() -> None:
            nonlocal gone
            while (await self.receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.create_task(watch())
        try:
            first = await anext(chunks, None)
            await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            started = True
            if first is not None:
                await self._relay(first, chunks, slot)
            await self._send(SSE_DONE, more=False)
        except asyncio.CancelledError:
            if gone:
                _uncancel()
                if not started:
                    raise ClientGone from None
            elif not (started and self.endpoint.lifecycle.claim_abort()):
                raise
            else:
                _uncancel()
                await self._fail(self.endpoint.lifecycle.shutdown_error())
        except TimeoutError:
            log.warning("the client read nothing for %ss: stream aborted", self.endpoint.send_timeout)
        except Exception as exc:
            if not started:
                raise
            await self._fail(self.endpoint._error(exc))
        finally:
            watcher.cancel()

    async def _relay(self, first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]], slot: Slot) -> None:
        """Send `first` and the chunks after it while a task reads them from the engine ahead of the client, as far
        as the slot allows; an engine error is raised here after the chunks before it were sent."""
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        taken = asyncio.Event()  # the client took an event: reading ahead may go on

        def put(event: bytes) -> None:
            slot.queued(len(event))
            queue.put_nowait(event)

        async def read_ahead() -> None:
            try:
                async for chunk in chunks:
                    put(_event(chunk))
                    while not slot.may_read_ahead:
                        taken.clear()
                        await taken.wait()
            except BaseException as exc:  # the engine's error, or a cancellation from inside the engine's stream
                queue.put_nowait(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                queue.put_nowait(None)
            slot.hand_back()

        put(_event(first))
        reader = asyncio.create_task(read_ahead())
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                await self._send(item)
                slot.sent(len(item))
                taken.set()
        finally:
            await _stopped(reader)  # the client left or stalled, or a shutdown: the chunks closed, the request aborted

    async def _send(self, data: bytes, more: bool = True) -> None:
        async with asyncio.timeout(self.endpoint.send_timeout):
            await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def _fail(self, error: APIError) -> None:
        self.endpoint.metrics.count_error(self.endpoint.protocol, error.type, self.model)
        with suppress(TimeoutError):
            await self._send(error_event(error, self.shape) + SSE_DONE, more=False)


async def read_request_body(receive: Receive, timeout: float) -> bytes:
    """The whole body, or a 408 if it does not arrive within `timeout` seconds."""
    try:
        return await read_body(receive, timeout)
    except BodyTimeout:
        raise APIError(
            f"The request body did not arrive within {timeout:g} seconds.", status=408, code="request_timeout"
        ) from None


async def prepare_body(
    prepare: Callable[[bytes], T], model: type[BaseModel], body: bytes, pool: Executor, checker: BodyChecker
) -> T:
    """`prepare(body)` on the worker thread, after the child process has vetted a very large body against the
    request `model`."""
    await checker.check(model, body)
    run = contextvars.copy_context().run  # keeps the request id on the worker's log lines
    outcome = await asyncio.get_running_loop().run_in_executor(pool, run, _prepare_detached, prepare, body)
    if isinstance(outcome, APIError):
        raise outcome
    return outcome


def _prepare_detached(prepare: Callable[[bytes], T], body: bytes) -> T | APIError:
    """`prepare` on the worker, a refusal returned without its traceback: the traceback's frames hold the parsed
    body, which would otherwise be freed on the event loop's thread when the error is answered."""
    try:
        return prepare(body)
    except APIError as exc:
        return exc.with_traceback(None)


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def _stopped(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has ended, however often this task is cancelled meanwhile: the task may be
    inside the engine's stream (aborting the request), and closing that stream before it is out fails. A
    cancellation received while waiting is raised afterwards."""
    task.cancel()
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _uncancel() -> None:
    """Take back a cancellation this module handles (a shutdown abort, a client gone), so the task goes on."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
