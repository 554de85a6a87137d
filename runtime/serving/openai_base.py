"""What the two OpenAI protocols share on top of the request path: the chunk envelope and the usage chunk."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

from vif.runtime.protocols.common import OpenAISamplingFields
from vif.runtime.serving.base import BaseServingEngine
from vif.runtime.serving.context import RequestContext

OpenAIRequestT = TypeVar("OpenAIRequestT", bound=OpenAISamplingFields)


class OpenAIServingBase(BaseServingEngine[OpenAIRequestT]):
    """Chat and Completions: `{id, object, created, model, choices}` chunks, and usage at the end on request."""

    chunk_object: ClassVar[str]

    def chunk(self, ctx: RequestContext[OpenAIRequestT], choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": ctx.request_id,
            "object": self.chunk_object,
            "created": ctx.created,
            "model": ctx.model,
            "choices": choices,
        }

    def format_stream_end(self, ctx: RequestContext[OpenAIRequestT]) -> Iterable[dict[str, Any]]:
        if ctx.request.include_usage():
            yield {**self.chunk(ctx, []), "usage": ctx.usage()}
