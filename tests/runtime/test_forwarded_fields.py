"""Behind vLLM's own router: the fields it adds to every request it forwards are accepted at their neutral values
and change nothing, while asking for what vif does not do, or a typo, stays a 400 naming the field
(vif.runtime.protocols.forwarded). The bodies are the ones vllm-router 0.1.17 sent for a plain client request,
recorded from a server that printed them."""

from __future__ import annotations

import pytest

from helpers.fake_engine import FakeEngine

MESSAGES = [{"role": "user", "content": "hi"}]
# What vllm-router 0.1.17 sent on for {"model", "messages" | "prompt", "max_tokens": 5} (and {"prompt"} on /generate).
FORWARDED = {
    "/v1/chat/completions": {
        "messages": MESSAGES, "stream": False, "max_tokens": 5, "logprobs": False, "no_stop_trim": False,
        "ignore_eos": False, "continue_final_message": False, "skip_special_tokens": True,
        "separate_reasoning": True, "stream_reasoning": True, "return_hidden_states": False,
        "include_reasoning": True,
    },
    "/v1/completions": {
        "prompt": "hi", "max_tokens": 5, "stream": True, "echo": False, "no_stop_trim": False, "ignore_eos": False,
        "skip_special_tokens": True, "return_hidden_states": False,
    },
    "/generate": {"prompt": "hi", "stream": False, "return_logprob": False, "return_hidden_states": False},
}  # fmt: skip
PLAIN = {
    "/v1/chat/completions": {"messages": MESSAGES, "max_tokens": 5},
    "/v1/completions": {"prompt": "hi", "max_tokens": 5, "stream": True},
    "/generate": {"prompt": "hi"},
}
# Of the fields it adds, those vif has no field of its own for (the others, such as `echo`, keep their meaning).
ROUTERS_OWN = {"no_stop_trim", "continue_final_message", "include_reasoning", "separate_reasoning", "stream_reasoning",
               "return_hidden_states", "return_logprob"}  # fmt: skip
ADDED = [(path, name) for path, body in FORWARDED.items() for name in body if name in ROUTERS_OWN]


@pytest.fixture
async def client(make_client):
    return await make_client()


@pytest.mark.parametrize("path", FORWARDED)
async def test_what_vllm_router_forwards_is_answered_as_the_plain_request(
    client, engine: FakeEngine, path: str
) -> None:
    plain = await client.post(path, json=PLAIN[path])
    forwarded = await client.post(path, json=FORWARDED[path])
    assert (plain.status_code, forwarded.status_code) == (200, 200), forwarded.text
    assert engine.requests[0][1] == engine.requests[1][1], "the added fields changed what reached the engine"
    assert len(plain.content) == len(forwarded.content)


@pytest.mark.parametrize(("path", "name"), ADDED)
async def test_an_added_field_at_another_value_is_a_400_naming_it(client, path: str, name: str) -> None:
    r = await client.post(path, json={**FORWARDED[path], name: not FORWARDED[path][name]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == name


@pytest.mark.parametrize("path", FORWARDED)
async def test_a_misspelt_field_is_still_refused(client, path: str) -> None:
    r = await client.post(path, json={**PLAIN[path], "no_stop_trimm": False})
    assert r.status_code == 400 and r.json()["error"]["param"] == "no_stop_trimm", r.text


# What vllm-router 0.1.17 sent on for {"prompt": "hi", "max_tokens": 4, "sampling_params": {...}} on /generate: SGLang's
# native shape. It drops vif's top-level max_tokens, so without sampling_params the answer runs to the end of the
# context; the flake it caused in test_behind_vllm_router is why this exists.
SGLANG_FORWARDED = {"prompt": "hi", "sampling_params": {"temperature": 0.0, "max_new_tokens": 4}, "stream": False,
                    "return_logprob": False, "return_hidden_states": False}  # fmt: skip


async def test_generate_takes_sglangs_sampling_params_as_vllm_router_forwards_them(client, engine: FakeEngine) -> None:
    plain = await client.post("/generate", json={"prompt": "hi", "max_tokens": 4, "temperature": 0})
    forwarded = await client.post("/generate", json=SGLANG_FORWARDED)
    assert (plain.status_code, forwarded.status_code) == (200, 200), forwarded.text
    assert engine.requests[0][1] == engine.requests[1][1]
    assert engine.requests[1][1].max_tokens == 4


@pytest.mark.parametrize(
    ("sampling_params", "top_level", "param"),
    [
        ({"max_new_tokens": 4}, {"max_tokens": 4}, "sampling_params"),  # one thing said twice
        ({"max_new_tokens": 0}, {}, "sampling_params.max_new_tokens"),  # vif's own range
        ({"n": 2}, {}, "sampling_params.n"),  # not one of the fields it maps
    ],
)
async def test_sglangs_sampling_params_are_checked_as_vifs_own(
    client, sampling_params: dict, top_level: dict, param: str
) -> None:
    r = await client.post("/generate", json={"prompt": "hi", **top_level, "sampling_params": sampling_params})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
