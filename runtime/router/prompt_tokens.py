"""A request's prompt as the engine will see it, in token ids, for `kv-aware` routing (`kv_index.py`).

The router holds no tokenizer or chat template: it asks a replica's `POST /tokenize` (vLLM's request shape, which
vif's runtime serves), with the same messages, tools and template switches the request carries, so the ids are
those the engine will cache. AIBrix's gateway does the same ("remote tokenizer"). A request whose prompt cannot be
put that way, or whose tokenization fails or is slow, has no ids, and is routed by `prefix-hash` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from vif.runtime.router.prefix import parse_body
from vif.runtime.shared.routes import Protocol

log = logging.getLogger(__name__)

TOKENIZE_PATH = "/tokenize"
CHAT_TEMPLATE_FIELDS = ("messages", "tools", "add_generation_prompt", "continue_final_message")
DEFAULT_TIMEOUT = 2.0


def generate_messages(body: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """`/generate`'s conversation as the runtime renders it: [system], then each earlier turn and its answer, then
    the prompt."""
    prompt, asked, answered = body.get("prompt"), body.get("history_input") or [], body.get("history_output") or []
    if not isinstance(prompt, str) or not isinstance(asked, list) or not isinstance(answered, list):
        return None
    system = body.get("system_info")
    messages = [{"role": "system", "content": system}] if isinstance(system, str) and system else []
    for question, answer in zip(asked, answered, strict=False):
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return [*messages, {"role": "user", "content": prompt}]


def tokenize_request(protocol: Protocol, body: Mapping[str, Any]) -> dict[str, Any] | list[int] | None:
    """What to ask `/tokenize` for this request's prompt, or the ids themselves when the request sent ids."""
    if protocol == "chat":
        return {field: body[field] for field in CHAT_TEMPLATE_FIELDS if field in body} if "messages" in body else None
    if protocol == "generate":
        messages = generate_messages(body)
        return {"messages": messages} if messages else None
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch goes to one replica: its first prompt decides (as for prefix-hash)
    if isinstance(prompt, str):
        return {"prompt": prompt}
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return prompt
    return None


class RemoteTokenizer:
    """Asks a replica for a request's token ids, with the client's own credentials."""

    def __init__(self, client: httpx.AsyncClient, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.client = client
        self.timeout = timeout

    async def tokens(
        self, replica: str, protocol: Protocol, body: bytes, authorization: bytes | None
    ) -> Sequence[int] | None:
        parsed = parse_body(body)
        wanted = tokenize_request(protocol, parsed) if parsed is not None else None
        if wanted is None or isinstance(wanted, list):
            return wanted
        headers = {"content-type": "application/json"}
        if authorization is not None:
            headers["authorization"] = authorization.decode("latin-1")
        try:
            response = await self.client.post(
                replica + TOKENIZE_PATH, content=orjson.dumps(wanted), headers=headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            log.debug("tokenizing at %s failed: %r", replica, exc)
            return None
        if response.status_code != 200:
            return None  # the request itself is likely invalid: the replica it goes to says so
        try:
            tokens = orjson.loads(response.content).get("tokens")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return tokens if isinstance(tokens, list) else None
