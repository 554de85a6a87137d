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

from typing import Any

from vif.runtime.protocols.chat import ChatCompletionRequest
from vif.runtime.protocols.errors import APIError
from vif.runtime.serving.chat import OpenAIServingChat
from vif.runtime.serving.context import PromptInput


class ShoutingServingChat(OpenAIServingChat):
    """Chat that upper-cases what users write, and tags its error messages (streamed ones too)."""

    def create_prompt(self, request: ChatCompletionRequest) -> list[PromptInput]:
        messages = [
            {"role": m.role, "content": m.text().upper() if m.role == "user" else m.text()} for m in request.messages
        ]
        return [PromptInput(self.engine.render_chat(messages, self.model.chat_template))]

    def create_error_response(self, error: APIError) -> dict[str, Any]:
        body = super().create_error_response(error)
        body["error"]["message"] = f"[shouting-chat] {body['error']['message']}"
        return body
