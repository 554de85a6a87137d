"""Sampling options shared by the two OpenAI protocols."""

from __future__ import annotations

import dataclasses

from vif.runtime.engine.types import SamplingOptions
from vif.runtime.protocols.common import OpenAISamplingFields


def openai_sampling_options(
    base: SamplingOptions,
    request: OpenAISamplingFields,
    logprobs: int | None,
    prompt_logprobs: int | None = None,
) -> SamplingOptions:
    """The basic options plus n, penalties, logprobs and vLLM's `ignore_eos`."""
    return dataclasses.replace(
        base,
        n=request.n,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        ignore_eos=request.ignore_eos,
    )
