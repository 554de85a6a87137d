"""Fields that other routers add to every request they forward, accepted at the value that changes nothing.

vLLM's own router (`vllm-router`, Rust, from SGLang's router) parses each request into its own struct and sends
that struct on, so a client's plain chat request reaches the replica with a dozen more fields, each at its
default (seen with vllm-router 0.1.17). vLLM's server ignores fields it does not know; vif refuses unknown fields,
so that a typo in an OpenAI field is a clear 400 (`StrictModel`). These fields are declared instead, each allowed
only at its neutral value: behind such a router vif answers as it would directly, and a request that asks for
what vif does not do (`no_stop_trim: true`, hidden states) is still a 400 that names the field. They are never
used and never dumped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from vif.runtime.protocols.strict import StrictModel


def _neutral(value: bool, what: str) -> Any:
    """The field's one allowed value, kept out of dumps, and why it is the only one."""
    description = f"Added by other routers (vllm-router); only {str(value).lower()}: {what}."
    return Field(value, exclude=True, description=description)


class ForwardedFields(StrictModel):
    """What vllm-router adds to every request it forwards, on each route."""

    return_hidden_states: Literal[False] = _neutral(False, "vif returns no hidden states")


class ForwardedOpenAIFields(ForwardedFields):
    """What it adds to OpenAI Chat and Completions requests."""

    no_stop_trim: Literal[False] = _neutral(False, "a stop string is trimmed from the answer, as OpenAI does")


class ForwardedChatFields(ForwardedOpenAIFields):
    """What it adds to OpenAI Chat requests."""

    continue_final_message: Literal[False] = _neutral(False, "the answer starts a new assistant message")
    include_reasoning: Literal[True] = _neutral(True, "vif does not separate reasoning from the answer")
    separate_reasoning: Literal[True] = _neutral(True, "vif does not separate reasoning from the answer")
    stream_reasoning: Literal[True] = _neutral(True, "vif does not separate reasoning from the answer")


class ForwardedGenerateFields(ForwardedFields):
    """What it adds to `/generate` requests (SGLang's native route, which shares vif's path)."""

    return_logprob: Literal[False] = _neutral(False, "/generate returns no log probabilities")
