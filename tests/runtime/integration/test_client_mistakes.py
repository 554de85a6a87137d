"""Client mistakes on the real engine: each a 4xx naming the parameter, before any byte of a response.

The first five are the requests that answered 500 (or 200 and then an error event) before issue 9.
"""

from __future__ import annotations

import httpx
import pytest

MISTAKES = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "n": 2, "temperature": 0}, "n"),
    ("/v1/completions", {"prompt": "Hi", "stop": ""}, "stop"),
    ("/generate", {"prompt": "Hi", "stop": ["", "."]}, "stop[0]"),
    ("/v1/completions", {"prompt": [-1]}, "prompt"),
    ("/v1/completions", {"prompt": [4294967296], "echo": True}, "prompt"),
    ("/v1/completions", {"prompt": [1, 49152]}, "prompt"),  # one past the vocabulary
    ("/v1/completions", {"prompt": "word " * 200_000}, "prompt"),  # far beyond the context: never tokenised
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}] * 5000}, "messages"),
    ("/v1/completions", {"prompt": ["Hi"] * 8, "n": 16}, "n"),  # 128 sequences in one request
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("path", "body", "param"), MISTAKES, ids=[f"{p}-{x}" for p, _, x in MISTAKES])
def test_a_client_mistake_is_a_400_naming_the_parameter(
    http: httpx.Client, path: str, body: dict, param: str, stream: bool
) -> None:
    r = http.post(path, json={**body, "stream": stream, "max_tokens": 4})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_the_server_still_answers_after_them(http: httpx.Client) -> None:
    r = http.post("/v1/completions", json={"prompt": "The sky is", "max_tokens": 3})
    assert r.status_code == 200 and r.json()["choices"][0]["text"]
