"""vif's runtime behind vLLM's own router (vllm-router 0.1.17, `cache_aware`): it adds fields of its own to every
request it forwards and asks the replica to tokenize first; vif answers through it as it answers directly."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from helpers.runtime_process import MODEL
from helpers.vllm_router import running_vllm_router

from .conftest import Server


@pytest.fixture(scope="module")
def front(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with (
        running_vllm_router(tmp_path_factory.mktemp("vllm-router"), server.base_url) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=120) as client,
    ):
        yield client


def test_chat_through_vllm_router_is_the_answer_given_directly(front: httpx.Client, http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8,
            "temperature": 0}  # fmt: skip
    through, direct = front.post("/v1/chat/completions", json=body), http.post("/v1/chat/completions", json=body)
    assert through.status_code == 200, through.text
    assert through.json()["choices"][0]["message"] == direct.json()["choices"][0]["message"]


def test_a_completion_streams_through_vllm_router(front: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "The sky is", "max_tokens": 6, "temperature": 0, "stream": True}
    with front.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200, r.read()
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) > 2, events


def test_generate_through_vllm_router(front: httpx.Client, http: httpx.Client) -> None:
    """vllm-router forwards `/generate` in SGLang's shape: the prompt and `sampling_params`, not vif's `max_tokens`
    (sent at the top level, the answer ran to the end of the context: the test's old flake)."""
    sampling = {"max_new_tokens": 4, "temperature": 0}
    through = front.post("/generate", json={"prompt": "Hi", "sampling_params": sampling})
    direct = http.post("/generate", json={"prompt": "Hi", "max_tokens": 4, "temperature": 0})
    assert through.status_code == 200, through.text
    assert through.json()["output"] == direct.json()["output"]
    assert through.json()["usage"]["completion_tokens"] <= 4


def test_what_vif_does_not_do_is_still_refused_through_it(front: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 4, "return_hidden_states": True}
    r = front.post("/v1/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "return_hidden_states", r.text
