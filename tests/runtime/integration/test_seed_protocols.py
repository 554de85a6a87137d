"""The seed's three curl bodies and the `/generate` protocol, on the real engine."""

from __future__ import annotations

import httpx
import orjson
from transformers import AutoTokenizer

from .conftest import MODEL, REPO

SEED_CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Hello, how are you?"}],
    "temperature": 0.7,
    "max_tokens": 100,
}
SEED_COMPLETION = {
    "model": MODEL,
    "prompt": "Complete this sentence: The future of AI is",
    "temperature": 0.7,
    "max_tokens": 100,
}
SEED_GENERATE = {
    "model": MODEL,
    "prompt": "Your custom prompt",
    "system_info": "System instructions",
    "history_input": ["Previous input"],
    "history_output": ["Previous output"],
    "temperature": 0.7,
    "max_tokens": 100,
}


def test_seed_chat_body(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=SEED_CHAT)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["choices"][0]["message"]["content"].strip()
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}


def test_seed_completion_body(http: httpx.Client) -> None:
    r = http.post("/completions", json=SEED_COMPLETION)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"].strip()


def test_seed_generate_body_renders_history_with_the_chat_template(http: httpx.Client) -> None:
    r = http.post("/generate", json=SEED_GENERATE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "generate" and body["output"].strip()
    tokenizer = AutoTokenizer.from_pretrained(REPO / "models/SmolLM2-135M-Instruct")
    messages = [
        {"role": "system", "content": "System instructions"},
        {"role": "user", "content": "Previous input"},
        {"role": "assistant", "content": "Previous output"},
        {"role": "user", "content": "Your custom prompt"},
    ]
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert body["usage"]["prompt_tokens"] == len(expected)


def test_generate_stream_matches_plain(http: httpx.Client) -> None:
    request = {"prompt": "Name a colour.", "system_info": "Answer in one word.", "temperature": 0, "max_tokens": 10}
    plain = http.post("/generate", json=request).json()
    with http.stream("POST", "/generate", json={**request, "stream": True}) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["output"] for c in chunks) == plain["output"]
    assert chunks[-1]["finish_reason"] == plain["finish_reason"]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}


def test_unequal_history_is_a_400(http: httpx.Client) -> None:
    r = http.post("/generate", json={**SEED_GENERATE, "history_output": []})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "history_output"
