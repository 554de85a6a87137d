"""`ServingTokenization`: vLLM's `/tokenize` and `/detokenize`, on the engine's own tokenizer and chat template.

Prompts are tokenised exactly as the inference routes tokenise them, so a client (vLLM's serving benchmark) can
size its prompts in the tokens the server counts. Like `BaseServingEngine.prepare`, everything here is
synchronous and CPU-bound, returns data or raises `APIError`, and the app runs it on its worker thread.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vif.runtime.engine.types import EngineClient, EngineRequestError
from vif.runtime.protocols.errors import APIError, from_validation_error, model_not_found
from vif.runtime.protocols.tokenize import DetokenizeRequest, TokenizeChatRequest, TokenizeRequest
from vif.runtime.serving.checks import check_token_ids, parse_json
from vif.runtime.serving.context import ServedModel

RequestModel = TypeVar("RequestModel", bound=BaseModel)


class ServingTokenization:
    """Tokenises a prompt or chat messages, and turns token ids back into text, for one served model."""

    def __init__(self, engine: EngineClient, model: ServedModel) -> None:
        self.engine = engine
        self.model = model

    def tokenize(self, body: bytes) -> dict[str, Any]:
        request = _parse(TokenizeRequest, body).root
        self.check_model(request.model)
        if isinstance(request, TokenizeChatRequest):
            self.check_text_size(request.text_length(), "messages")
            messages = [m.for_template() for m in request.messages]
            try:
                tokens = self.engine.render_chat(
                    messages,
                    self.model.chat_template,
                    [t.model_dump(exclude_none=True) for t in request.tools] if request.tools else None,
                    add_generation_prompt=request.add_generation_prompt,
                    continue_final_message=request.continue_final_message,
                    add_special_tokens=request.add_special_tokens,
                )
            except EngineRequestError as exc:
                code = "invalid_request" if exc.param else "invalid_prompt"  # as the chat route answers it
                raise APIError(str(exc), param=exc.param, code=code) from None
        else:
            self.check_text_size(request.text_length(), "prompt")
            tokens = self.engine.encode(request.prompt, request.add_special_tokens)
        return {
            "count": len(tokens),
            "max_model_len": self.engine.info.max_model_len,
            "tokens": tokens,
            "token_strs": self.engine.token_strings(tokens) if request.return_token_strs else None,
        }

    def detokenize(self, body: bytes) -> dict[str, Any]:
        request = _parse(DetokenizeRequest, body)
        self.check_model(request.model)
        limit = self.engine.info.max_model_len
        if len(request.tokens) > limit:
            raise APIError(
                f"At most {limit} token ids (the model's context) can be detokenized; got {len(request.tokens)}.",
                param="tokens",
                code="too_long",
            )
        check_token_ids(request.tokens, self.engine.info.vocab_size, "tokens")
        return {"prompt": self.engine.decode(request.tokens)}

    def check_model(self, name: str | None) -> None:
        """The base model and its LoRA adapters share the tokenizer: any of their names will do, as in vLLM."""
        if name is not None and name != self.model.name and name not in self.model.adapters:
            raise model_not_found(name)

    def check_text_size(self, chars: int, param: str) -> None:
        """Refuse text that cannot fit the context before tokenising it: a token is at most `max_token_chars`
        characters long. Unlike a generation request, a prompt that fills the context exactly is fine here."""
        limit = self.engine.info.max_model_len
        tokens = math.ceil(chars / self.engine.info.max_token_chars)
        if tokens > limit:
            raise APIError(
                f"This model's maximum context length is {limit} tokens. However, your prompt has at least "
                f"{tokens} tokens. Please reduce the length of the prompt.",
                param=param,
                code="context_length_exceeded",
            )


def _parse(model: type[RequestModel], body: bytes) -> RequestModel:
    try:
        return model.model_validate(parse_json(body))
    except ValidationError as exc:
        raise from_validation_error(exc) from None
