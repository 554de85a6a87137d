"""An example serving-class plugin: it overrides two steps of the request path and nothing else.

Enable it in `model_config.json`, either by listing it:
    "class_name": "example_plugin:ShoutingServingChat",
    "allowed_classes": ["example_plugin:ShoutingServingChat"]
or by registering it under the entry-point group `vif.serving_engines` in the plugin's own package:
    [project.entry-points."vif.serving_engines"]
    ShoutingServingChat = "example_plugin:ShoutingServingChat"
and writing `"class_name": "ShoutingServingChat"`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vif.runtime.protocols.chat import ChatCompletionRequest
from vif.runtime.serving.base import PromptInput
from vif.runtime.serving.chat import OpenAIServingChat


class ShoutingServingChat(OpenAIServingChat):
    """Chat that upper-cases what users write, and tags its error messages."""

    def create_prompt(self, request: ChatCompletionRequest, raw_request: Request) -> list[PromptInput]:
        messages = [
            {"role": m.role, "content": m.text().upper() if m.role == "user" else m.text()} for m in request.messages
        ]
        return [PromptInput(self.engine.render_chat(messages, self.model.chat_template))]

    def create_error_response(self, message: str, **kwargs: object) -> Response:
        return super().create_error_response(f"[shouting-chat] {message}", **kwargs)  # type: ignore[arg-type]
