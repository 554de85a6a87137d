"""`OpenAIServingCompletion`: OpenAI (legacy) Completions on raw prompts, with echo and logprobs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from vif.runtime.engine.types import ChoiceDelta, SamplingOptions, TokenLogprob
from vif.runtime.protocols.completion import CompletionRequest
from vif.runtime.serving.context import ChoiceResult, PromptInput, RequestContext
from vif.runtime.serving.openai_base import OpenAIServingBase
from vif.runtime.serving.sampling import openai_sampling_options


class OpenAIServingCompletion(OpenAIServingBase[CompletionRequest]):
    protocol = "completion"
    request_model = CompletionRequest
    id_prefix = "cmpl"
    chunk_object = "text_completion"

    def min_prompt_tokens(self, request: CompletionRequest) -> list[int]:
        chars = self.engine.info.max_token_chars
        return [-(-len(p) // chars) if isinstance(p, str) else len(p) for p in request.prompts()]

    def create_prompt(self, request: CompletionRequest) -> list[PromptInput]:
        prompts = []
        for prompt in request.prompts():
            if isinstance(prompt, str):
                prompts.append(PromptInput(self.engine.encode(prompt), prompt))
            else:
                self.check_token_ids(prompt, "prompt")
                prompts.append(PromptInput(list(prompt), self.engine.decode(prompt) if request.echo else None))
        return prompts

    def create_sampling_options(self, request: CompletionRequest, prompt: PromptInput) -> SamplingOptions:
        prompt_logprobs = request.logprobs if request.echo else None
        base = super().create_sampling_options(request, prompt)
        return openai_sampling_options(base, request, request.logprobs, prompt_logprobs)

    def format_chunks(
        self, ctx: RequestContext[CompletionRequest], choice: ChoiceDelta, first: bool
    ) -> Iterable[dict[str, Any]]:
        text, logprobs = self._echoed(ctx, choice.index, choice.text, choice.logprobs or (), first)
        entry: dict[str, Any] = {"index": choice.index, "text": text, "logprobs": None}
        if ctx.request.logprobs is not None:
            offset = ctx.text_offsets.get(choice.index, 0)
            entry["logprobs"] = _completion_logprobs(logprobs, offset)
            ctx.text_offsets[choice.index] = offset + sum(len(lp.token) for lp in logprobs if lp)
        entry["finish_reason"] = choice.finish_reason
        yield self.chunk(ctx, [entry])

    def format_response(
        self, ctx: RequestContext[CompletionRequest], results: dict[int, ChoiceResult]
    ) -> dict[str, Any]:
        choices = []
        for index in sorted(results):
            result = results[index]
            text, logprobs = self._echoed(ctx, index, "".join(result.text), result.logprobs, True)
            choices.append(
                {
                    "index": index,
                    "text": text,
                    "logprobs": None if ctx.request.logprobs is None else _completion_logprobs(logprobs, 0),
                    "finish_reason": result.finish_reason,
                }
            )
        return {**self.chunk(ctx, choices), "usage": ctx.usage()}

    def _echoed(
        self,
        ctx: RequestContext[CompletionRequest],
        index: int,
        text: str,
        logprobs: Sequence[TokenLogprob | None],
        first: bool,
    ) -> tuple[str, list[TokenLogprob | None]]:
        """With `echo`, the first output of a choice starts with its prompt (and the prompt's logprobs)."""
        if not (ctx.request.echo and first):
            return text, list(logprobs)
        prompt_index = index // ctx.request.n
        prompt = ctx.prompts[prompt_index]
        echoed = list(ctx.prompt_logprobs.get(prompt_index, ()))
        if echoed and echoed[0] is None:  # the first prompt token has no logprob, but it has its text
            echoed[0] = TokenLogprob(self.engine.decode(prompt.token_ids[:1]), None)
        return (prompt.text or "") + text, [*echoed, *logprobs]


def _completion_logprobs(logprobs: Sequence[TokenLogprob | None], offset: int) -> dict[str, list[Any]]:
    """The legacy shape: parallel lists of tokens, their logprobs, the top alternatives and text offsets."""
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for lp in logprobs:
        token = "" if lp is None else lp.token
        out["tokens"].append(token)
        out["token_logprobs"].append(None if lp is None else lp.logprob)
        out["top_logprobs"].append(dict(lp.top) if lp is not None and lp.top else None)
        out["text_offset"].append(offset)
        offset += len(token)
    return out
