"""The custom `/generate` protocol: a prompt plus system instructions and the conversation so far."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationInfo, create_model, field_validator, model_validator

from vif.runtime.protocols.common import SamplingFields
from vif.runtime.protocols.forwarded import ForwardedGenerateFields
from vif.runtime.protocols.strict import StrictModel

MAX_HISTORY_TURNS = 2048

# SGLang's names in its `sampling_params` -> vif's field of the same meaning.
SGLANG_SAMPLING = {
    "max_new_tokens": "max_tokens", "min_new_tokens": "min_tokens", "temperature": "temperature", "top_p": "top_p",
    "top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty", "stop": "stop",
    "stop_token_ids": "stop_token_ids", "seed": "seed",
}  # fmt: skip


def _same_type(name: str) -> Any:
    """vif's field `name`'s type with its range, or None."""
    field = SamplingFields.model_fields[name]
    annotation: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return annotation | None


_SGLANG_FIELDS: dict[str, Any] = {
    theirs: (_same_type(ours), Field(None, description=f"vif's `{ours}`.")) for theirs, ours in SGLANG_SAMPLING.items()
}
SGLangSamplingParams: type[StrictModel] = create_model(  # each field with vif's own type and range
    "SGLangSamplingParams",
    __base__=StrictModel,
    __doc__="SGLang's `sampling_params`, the shape vLLM's router forwards `/generate` in (it keeps the prompt and this "
    "object and drops vif's own top-level fields, `max_tokens` among them). Each is vif's field of that meaning.",
    **_SGLANG_FIELDS,
)


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
    sampling_params: SGLangSamplingParams | None = Field(  # type: ignore[valid-type]
        None, description="The sampling fields in SGLang's shape, as vLLM's router forwards them; not beside vif's own."
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

    @field_validator("sampling_params")
    @classmethod
    def _one_name_each(cls, value: StrictModel | None, info: ValidationInfo) -> StrictModel | None:
        for theirs in value.model_fields_set if value is not None else ():
            ours = SGLANG_SAMPLING[theirs]
            if info.data.get(ours) != SamplingFields.model_fields[ours].default:
                raise ValueError(f"{theirs} and the top-level {ours} set the same thing; give one of them")
        return value

    @model_validator(mode="after")
    def _from_sglang_names(self) -> GenerateRequest:
        given: dict[str, Any] = self.sampling_params.model_dump(exclude_unset=True) if self.sampling_params else {}
        for theirs, value in given.items():
            setattr(self, SGLANG_SAMPLING[theirs], value)
        return self

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
