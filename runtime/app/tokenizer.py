"""vLLM's tokenizer routes, `POST /tokenize` and `POST /detokenize`: the body read and prepared as the inference
routes do it (on the worker thread), then answered at once. Nothing runs on the engine, so no
concurrency slot is taken; like the inference routes, they answer 503 until the engine is up."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from vif.runtime.app.body_check import BodyChecker
from vif.runtime.app.errors import JSON_HEADERS, as_api_error, send_error
from vif.runtime.app.inference import prepare_body, read_request_body
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.protocols.errors import APIError
from vif.runtime.protocols.tokenize import DetokenizeRequest, TokenizeRequest
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.tokenization import ServingTokenization
from vif.runtime.shared.asgi import ClientGone

Answer = Callable[[ServingTokenization, bytes], dict[str, Any]]

# path -> the request model (for the body check) and the serving step that answers it
TOKENIZER_PATHS: dict[str, tuple[type[BaseModel], Answer]] = {
    "/tokenize": (TokenizeRequest, ServingTokenization.tokenize),
    "/detokenize": (DetokenizeRequest, ServingTokenization.detokenize),
}


class TokenizerEndpoint:
    """The ASGI endpoint of one tokenizer route."""

    def __init__(
        self,
        path: str,
        lifecycle: Lifecycle,
        model: Callable[[], ServedModel],
        pool: Executor,
        checker: BodyChecker,
        body_timeout: float,
    ) -> None:
        self.request_model, self.answer = TOKENIZER_PATHS[path]
        self.lifecycle = lifecycle
        self.model = model  # the served model in force (its chat template reloads live)
        self.pool = pool
        self.checker = checker
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            serving = ServingTokenization(self.lifecycle.serving_engine(), self.model())
            body = await read_request_body(receive, self.body_timeout)
            work = functools.partial(self.answer, serving)
            answer = await prepare_body(work, self.request_model, body, self.pool, self.checker)
        except ClientGone:
            await send_error(scope, send, APIError("The client disconnected.", status=499, code="client_disconnected"))
            return
        except Exception as exc:
            await send_error(scope, send, as_api_error(exc))
            return
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})
