"""The custom `/generate` protocol: a prompt plus system instructions and the conversation so far."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from vif.runtime.protocols.common import SamplingFields
from vif.runtime.protocols.forwarded import ForwardedGenerateFields

MAX_HISTORY_TURNS = 2048


class GenerateRequest(SamplingFields, ForwardedGenerateFields):
    prompt: str = Field(min_length=1)
    system_info: str | None = None
    history_input: list[str] = Field(
        default_factory=list, max_length=MAX_HISTORY_TURNS, description="Earlier user turns, oldest first."
    )
    history_output: list[str] = Field(
        default_factory=list,
        max_length=MAX_HISTORY_TURNS,
        validate_default=True,
        description="The model's answers to history_input.",
    )

    @field_validator("history_output")
    @classmethod
    def _history_pairs(cls, value: list[str], info: ValidationInfo) -> list[str]:
        inputs = info.data.get("history_input")
        if inputs is not None and len(inputs) != len(value):
            raise ValueError(
                f"history_input has {len(inputs)} turns but history_output has {len(value)}; they pair up turn by turn"
            )
        return value

    def messages(self) -> list[dict[str, str]]:
        """[system][user, assistant]... [user: prompt], ready for the chat template."""
        messages = [{"role": "system", "content": self.system_info}] if self.system_info else []
        for asked, answered in zip(self.history_input, self.history_output, strict=True):
            messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
        messages.append({"role": "user", "content": self.prompt})
        return messages

    def text_lengths(self) -> list[int]:
        """Characters of the one prompt's text (system info, history and prompt)."""
        history = sum(map(len, self.history_input)) + sum(map(len, self.history_output))
        return [len(self.system_info or "") + history + len(self.prompt)]
