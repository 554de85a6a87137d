"""The routing key: what of each protocol's body is hashed, parsed once, never failing on a bad body."""

from __future__ import annotations

import orjson
import pytest

from vif.runtime.router.prefix import SEPARATOR, Extractor, chat_prefix, completion_prefix, generate_prefix, routing_key

SYSTEM = {"role": "system", "content": "You are terse."}


def key(extract: Extractor, body: object, chars: int = 256) -> str | None:
    return routing_key(extract, orjson.dumps(body), chars)


def test_chat_key_is_the_messages_up_to_the_first_user_message() -> None:
    first = [SYSTEM, {"role": "user", "content": "Hi"}]
    later = [*first, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Weather?"}]
    assert chat_prefix({"messages": first}) == f"system:You are terse.{SEPARATOR}user:Hi"
    assert key(chat_prefix, {"messages": later, "model": "m"}) == key(chat_prefix, {"messages": first})


def test_chat_keys_differ_by_first_question() -> None:
    a = {"messages": [SYSTEM, {"role": "user", "content": "one"}]}
    b = {"messages": [SYSTEM, {"role": "user", "content": "two"}]}
    assert key(chat_prefix, a) != key(chat_prefix, b)


def test_chat_content_parts_count_as_their_text() -> None:
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    assert key(chat_prefix, parts) == key(chat_prefix, {"messages": [{"role": "user", "content": "ab"}]})


def test_long_shared_system_prompt_is_one_key() -> None:
    long_system = {"role": "system", "content": "rules " * 100}
    a = {"messages": [long_system, {"role": "user", "content": "one"}]}
    b = {"messages": [long_system, {"role": "user", "content": "two"}]}
    assert key(chat_prefix, a, chars=256) == key(chat_prefix, b, chars=256)
    assert len(key(chat_prefix, a, chars=256) or "") == 256


def test_generate_key_matches_its_chat_rendering() -> None:
    """The runtime renders /generate as chat messages, so the same conversation gets the same key either way."""
    body = {"system_info": "You are terse.", "history_input": ["Hi"], "history_output": ["Hello"], "prompt": "More?"}
    chat = {"messages": [SYSTEM, {"role": "user", "content": "Hi"}]}
    assert key(generate_prefix, body) == key(chat_prefix, chat)
    assert key(generate_prefix, {"prompt": "Hi", "system_info": "You are terse."}) == key(chat_prefix, chat)
    assert key(generate_prefix, {"prompt": "Hi"}) == "user:Hi"


def test_completion_key_is_the_prompt_start() -> None:
    assert key(completion_prefix, {"prompt": "x" * 1000}, chars=100) == "x" * 100
    assert key(completion_prefix, {"prompt": ["first", "second"]}) == "first"
    assert key(completion_prefix, {"prompt": [1, 2, 3]}) == "tokens:1,2,3"
    assert key(completion_prefix, {"prompt": [[4, 5], [6]]}) == "tokens:4,5"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'"text"', b'{"messages": "x"}', b'{"messages": []}', b'{"messages": [1]}',
     b'{"prompt": 5}', b'{"prompt": []}', b'{"prompt": {"a": 1}}'],
)  # fmt: skip
def test_unreadable_bodies_have_no_key(body: bytes) -> None:
    for extract in (chat_prefix, completion_prefix, generate_prefix):
        assert routing_key(extract, body) is None


def test_bodies_over_the_parse_limit_have_no_key() -> None:
    body = orjson.dumps({"prompt": "x" * 100})
    assert routing_key(completion_prefix, body, max_parse_bytes=len(body) - 1) is None
    assert routing_key(completion_prefix, body, max_parse_bytes=len(body)) == "x" * 100
