"""What `kv-aware` asks a replica's `/tokenize` for, per protocol: the prompt the engine will see."""

from __future__ import annotations

from typing import Any

import pytest

from vif.runtime.router.prompt_tokens import generate_messages, tokenize_request

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("protocol", "body", "asked"),
    [
        ("chat", {"messages": CHAT, "max_tokens": 3, "stream": True}, {"messages": CHAT}),
        (
            "chat",
            {"messages": CHAT, "tools": [{"type": "function"}], "add_generation_prompt": False, "temperature": 0},
            {"messages": CHAT, "tools": [{"type": "function"}], "add_generation_prompt": False},
        ),
        ("chat", {"prompt": "no messages"}, None),
        ("completion", {"prompt": "once upon", "max_tokens": 3}, {"prompt": "once upon"}),
        ("completion", {"prompt": ["first", "second"]}, {"prompt": "first"}),
        ("completion", {"prompt": [1, 2, 3]}, [1, 2, 3]),
        ("completion", {"prompt": [[4, 5], [6]]}, [4, 5]),
        ("completion", {"prompt": 7}, None),
        ("generate", {"prompt": "and now?"}, {"messages": [{"role": "user", "content": "and now?"}]}),
        ("generate", {"history_input": ["a"]}, None),
    ],
)
def test_what_is_tokenized(protocol: Any, body: dict[str, Any], asked: Any) -> None:
    assert tokenize_request(protocol, body) == asked


def test_generate_is_rendered_as_the_runtime_renders_it() -> None:
    from vif.runtime.protocols.generate import GenerateRequest

    body = {"prompt": "p", "system_info": "s", "history_input": ["q1", "q2"], "history_output": ["a1", "a2"]}
    assert generate_messages(body) == GenerateRequest(**body).messages()
