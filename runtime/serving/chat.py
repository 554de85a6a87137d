"""`OpenAIServingChat`: OpenAI Chat Completions on the model's chat template."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vif.runtime.engine.types import ChoiceDelta, SamplingOptions, TokenLogprob
from vif.runtime.protocols.chat import ChatCompletionRequest
from vif.runtime.serving.context import ChoiceResult, PromptInput, RequestContext
from vif.runtime.serving.openai_base import OpenAIServingBase
from vif.runtime.serving.sampling import openai_sampling_options


class OpenAIServingChat(OpenAIServingBase[ChatCompletionRequest]):
    protocol = "chat"
    request_model = ChatCompletionRequest
    id_prefix = "chatcmpl"
    chunk_object = "chat.completion.chunk"
    prompt_param = "messages"

    def create_prompt(self, request: ChatCompletionRequest) -> list[PromptInput]:
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        return [PromptInput(self.engine.render_chat(messages, self.model.chat_template))]

    def create_sampling_options(self, request: ChatCompletionRequest, prompt: PromptInput) -> SamplingOptions:
        logprobs = (request.top_logprobs or 0) if request.logprobs else None
        return openai_sampling_options(super().create_sampling_options(request, prompt), request, logprobs)

    def format_chunks(
        self, ctx: RequestContext[ChatCompletionRequest], choice: ChoiceDelta, first: bool
    ) -> Iterable[dict[str, Any]]:
        delta: dict[str, Any] = {"content": choice.text}
        if first:
            delta["role"] = self.model.response_role
        entry: dict[str, Any] = {"index": choice.index, "delta": delta, "finish_reason": choice.finish_reason}
        if choice.logprobs is not None:
            entry["logprobs"] = {"content": [_chat_logprob(lp) for lp in choice.logprobs if lp]}
        yield self.chunk(ctx, [entry])

    def format_response(
        self, ctx: RequestContext[ChatCompletionRequest], results: dict[int, ChoiceResult]
    ) -> dict[str, Any]:
        choices = []
        for index in sorted(results):
            result = results[index]
            choice: dict[str, Any] = {
                "index": index,
                "message": {"role": self.model.response_role, "content": "".join(result.text)},
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
            if ctx.request.logprobs:
                choice["logprobs"] = {"content": [_chat_logprob(lp) for lp in result.logprobs if lp]}
            choices.append(choice)
        return {
            "id": ctx.request_id,
            "object": "chat.completion",
            "created": ctx.created,
            "model": self.model.name,
            "choices": choices,
            "usage": ctx.usage(),
        }


def _chat_logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.token.encode()),
        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in lp.top],
    }
