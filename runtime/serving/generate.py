"""`CustomServingGenerate`: the custom `/generate` protocol, a prompt with system info and history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vif.runtime.engine.types import ChoiceDelta
from vif.runtime.protocols.generate import GenerateRequest
from vif.runtime.serving.base import BaseServingEngine
from vif.runtime.serving.context import ChoiceResult, PromptInput, RequestContext


class CustomServingGenerate(BaseServingEngine[GenerateRequest]):
    protocol = "generate"
    request_model = GenerateRequest
    id_prefix = "gen"

    def create_prompt(self, request: GenerateRequest) -> list[PromptInput]:
        return [PromptInput(self.engine.render_chat(request.messages(), self.model.chat_template))]

    def format_chunks(
        self, ctx: RequestContext[GenerateRequest], choice: ChoiceDelta, first: bool
    ) -> Iterable[dict[str, Any]]:
        yield {"id": ctx.request_id, "output": choice.text, "finish_reason": choice.finish_reason}

    def format_response(self, ctx: RequestContext[GenerateRequest], results: dict[int, ChoiceResult]) -> dict[str, Any]:
        result = results.get(0, ChoiceResult())
        return {
            "id": ctx.request_id,
            "object": "generate",
            "created": ctx.created,
            "model": ctx.model,
            "output": "".join(result.text),
            "finish_reason": result.finish_reason,
            "usage": ctx.usage(),
        }
