"""Large bodies are checked by a separate process before this one parses them.

Parsing JSON and validating it are single long C calls that hold the GIL: on a busy server a 2 MB body of
40,000 short messages holds it for ~45 ms, and no thread can shorten that, so the event loop (and `/health`
with it) stops while it lasts; sixteen such bodies at once stalled it for 150-600 ms. A child process applies
the request model's own checks (JSON, types, list caps) first and answers with nothing or the refusal, so a
body that is refused is never parsed here; one that passes is parsed again here, on the worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from vif.runtime.protocols.errors import APIError, from_validation_error

log = logging.getLogger(__name__)

CHECK_ABOVE_BYTES = 256 << 10  # smaller bodies parse in a few milliseconds: not worth a trip to the child


class BodyChecker:
    """One child process (spawned, so it holds none of the engine's threads or memory) that vets bodies. It
    starts with the first very large body (a second or so), so servers that never see one never start it."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def check(self, model: type[BaseModel], body: bytes) -> None:
        """Raise the `APIError` the request model would raise for `body`, without parsing it here."""
        if len(body) <= CHECK_ABOVE_BYTES:
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        try:
            refusal = await asyncio.wrap_future(self._pool.submit(_refusal, model, body))
        except BrokenProcessPool:  # the child died (killed for memory?): the server checks this one itself
            log.warning("the body-check process died; the next very large body starts another")
            self.shutdown()
            return
        if refusal is not None:
            raise APIError(**refusal)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _refusal(model: type[BaseModel], body: bytes) -> dict[str, Any] | None:
    """In the child: the refusal of `body` as APIError's arguments, or None if the model accepts it."""
    try:
        model.model_validate(orjson.loads(body))
    except orjson.JSONDecodeError:
        return {"message": "The request body is not valid JSON.", "code": "invalid_json"}
    except ValidationError as exc:
        error = from_validation_error(exc)
        return {"message": error.message, "param": error.param, "code": error.code}
    return None
