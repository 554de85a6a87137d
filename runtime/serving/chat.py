"""`OpenAIServingChat`: OpenAI Chat Completions on the model's chat template."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vif.runtime.engine.types import ChoiceDelta, SamplingOptions, TokenLogprob
from vif.runtime.protocols.chat import ChatCompletionRequest
from vif.runtime.protocols.structured import Constraint
from vif.runtime.protocols.tools import NamedToolChoice
from vif.runtime.serving.context import ChoiceResult, PromptInput, RequestContext
from vif.runtime.serving.openai_base import OpenAIServingBase
from vif.runtime.serving.sampling import openai_sampling_options
from vif.runtime.serving.tools import finish_reason, new_call_id, read_calls, tool_call, tool_constraint


class OpenAIServingChat(OpenAIServingBase[ChatCompletionRequest]):
    protocol = "chat"
    request_model = ChatCompletionRequest
    id_prefix = "chatcmpl"
    chunk_object = "chat.completion.chunk"
    prompt_param = "messages"

    def create_prompt(self, request: ChatCompletionRequest) -> list[PromptInput]:
        messages = [m.for_template() for m in request.messages]
        tools = [t.model_dump(exclude_none=True) for t in request.tools] if request.tools else None
        return [PromptInput(self.engine.render_chat(messages, self.model.chat_template, tools))]

    def create_constraint(self, request: ChatCompletionRequest) -> Constraint | None:
        return tool_constraint(request) or super().create_constraint(request)

    def create_sampling_options(self, request: ChatCompletionRequest, prompt: PromptInput) -> SamplingOptions:
        logprobs = (request.top_logprobs or 0) if request.logprobs else None
        return openai_sampling_options(super().create_sampling_options(request, prompt), request, logprobs)

    def format_chunks(
        self, ctx: RequestContext[ChatCompletionRequest], choice: ChoiceDelta, first: bool
    ) -> Iterable[dict[str, Any]]:
        delta, reason = self._delta(ctx, choice, first)
        if delta is None:  # held text: only its logprobs, if asked for, go out now
            if choice.logprobs is None:
                return
            delta = {}
        if first:
            delta["role"] = self.model.response_role
        entry: dict[str, Any] = {"index": choice.index, "delta": delta, "finish_reason": reason}
        if choice.logprobs is not None:
            entry["logprobs"] = {"content": [_chat_logprob(lp) for lp in choice.logprobs if lp]}
        yield self.chunk(ctx, [entry])

    def format_response(
        self, ctx: RequestContext[ChatCompletionRequest], results: dict[int, ChoiceResult]
    ) -> dict[str, Any]:
        choices = []
        for index in sorted(results):
            result = results[index]
            content, calls = self._answer(ctx.request, "".join(result.text))
            message: dict[str, Any] = {"role": self.model.response_role, "content": content}
            if calls:
                message["tool_calls"] = calls
            choice: dict[str, Any] = {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(calls, result.finish_reason),
            }
            if ctx.request.logprobs:
                choice["logprobs"] = {"content": [_chat_logprob(lp) for lp in result.logprobs if lp]}
            choices.append(choice)
        return {
            "id": ctx.request_id,
            "object": "chat.completion",
            "created": ctx.created,
            "model": ctx.model,
            "choices": choices,
            "usage": ctx.usage(),
        }

    def _delta(
        self, ctx: RequestContext[ChatCompletionRequest], choice: ChoiceDelta, first: bool
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The delta of one step and the finish reason to send with it. A named tool's arguments stream as they
        come; calls read from the whole answer (`required`, or a parser's) hold its text until the choice ends
        (None: nothing to send yet; the first chunk still goes out, with the role)."""
        request = ctx.request
        tool_choice = request.effective_tool_choice()
        if isinstance(tool_choice, NamedToolChoice):
            call: dict[str, Any] = {"index": 0, "function": {"arguments": choice.text}}
            if first:
                call.update(id=new_call_id(), type="function")
                call["function"]["name"] = tool_choice.function.name
            return {"tool_calls": [call]}, finish_reason([call], choice.finish_reason)
        if not self._reads_calls(request):
            return {"content": choice.text}, choice.finish_reason
        held = ctx.held_text.setdefault(choice.index, [])
        held.append(choice.text)
        if choice.finish_reason is None:
            return ({"content": None} if first else None), None
        content, calls = self._answer(request, "".join(held))
        if not calls:
            return {"content": content}, choice.finish_reason
        delta: dict[str, Any] = {"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}
        if content:
            delta["content"] = content
        return delta, finish_reason(calls, choice.finish_reason)

    def _reads_calls(self, request: ChatCompletionRequest) -> bool:
        """Whether the calls are read from the whole answer: `required`'s array, or a free answer (`auto`) when
        the model has a tool-call parser."""
        choice = request.effective_tool_choice()
        return choice == "required" or (choice == "auto" and self.engine.tool_call_parser is not None)

    def _answer(self, request: ChatCompletionRequest, text: str) -> tuple[str | None, list[dict[str, Any]] | None]:
        """The answer's text and its tool calls (None when it makes none)."""
        if request.forced_tools():
            calls = read_calls(request, text)
            return (None, calls) if calls else (text, None)
        parser = self.engine.tool_call_parser
        if request.effective_tool_choice() == "auto" and parser is not None:
            parsed = parser.parse(text, [t.model_dump(exclude_none=True) for t in request.tools or ()])
            if parsed.calls:
                return parsed.content, [tool_call(name, arguments) for name, arguments in parsed.calls]
        return text, None


def _chat_logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.token.encode()),
        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in lp.top],
    }
