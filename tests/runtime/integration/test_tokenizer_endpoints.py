"""`/tokenize` and `/detokenize` on the real engine: the counts the inference routes report, round trips, and the
calls vLLM's serving benchmark makes to align its prompts with the server's tokenizer."""

from __future__ import annotations

import httpx
from transformers import AutoTokenizer

from .conftest import MODEL, REPO, Server

PROMPT = "The capital of France is Paris. Its river, the Seine, flows through the city."
MESSAGES = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "What is the capital of France?"},
]


def tokenize(http: httpx.Client, body: dict) -> dict:
    r = http.post("/tokenize", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_tokenize_a_prompt_and_detokenize_it_back(http: httpx.Client) -> None:
    answer = tokenize(http, {"model": MODEL, "prompt": PROMPT})
    assert answer["count"] == len(answer["tokens"]) > 10
    assert answer["max_model_len"] == 2048 and answer["token_strs"] is None
    r = http.post("/detokenize", json={"model": MODEL, "tokens": answer["tokens"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"prompt": PROMPT}


def test_chat_count_is_the_chat_routes_prompt_tokens(http: httpx.Client) -> None:
    answer = tokenize(http, {"model": MODEL, "messages": MESSAGES})
    chat = http.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "max_tokens": 1})
    assert chat.status_code == 200, chat.text
    assert answer["count"] == chat.json()["usage"]["prompt_tokens"] == len(answer["tokens"])
    bare = tokenize(http, {"messages": MESSAGES, "add_generation_prompt": False})
    assert answer["tokens"][: bare["count"]] == bare["tokens"] and bare["count"] < answer["count"]


def test_continue_final_message_leaves_it_open(http: httpx.Client) -> None:
    prefill = [*MESSAGES, {"role": "assistant", "content": "The capital is"}]
    body = {"messages": prefill, "add_generation_prompt": False, "continue_final_message": True}
    tokens = tokenize(http, body)["tokens"]
    text = http.post("/detokenize", json={"tokens": tokens}).json()["prompt"]
    assert text.endswith("<|im_start|>assistant\nThe capital is")
    both = http.post("/tokenize", json={"messages": prefill, "continue_final_message": True})
    assert both.status_code == 400 and both.json()["error"]["param"] == "continue_final_message"


def test_token_strings_are_the_tokenizers_own(http: httpx.Client) -> None:
    answer = tokenize(http, {"prompt": "Hello world", "return_token_strs": True})
    assert answer["token_strs"] == ["Hello", "Ġworld"]  # byte-level BPE: Ġ is the space before a word


def test_tokens_match_the_benchmarks_local_tokenizer(http: httpx.Client) -> None:
    """vLLM's serving benchmark tokenizes without special tokens, compares the count with its own, and
    detokenizes a prefix to cut prompts to length."""
    tokenizer = AutoTokenizer.from_pretrained(REPO / "models/SmolLM2-135M-Instruct")
    tokens = tokenize(http, {"model": MODEL, "prompt": PROMPT, "add_special_tokens": False})["tokens"]
    assert tokens == tokenizer.encode(PROMPT, add_special_tokens=False)
    prefix = http.post("/detokenize", json={"model": MODEL, "tokens": tokens[:5]}).json()["prompt"]
    assert tokenize(http, {"model": MODEL, "prompt": prefix, "add_special_tokens": False})["tokens"] == tokens[:5]


def test_refusals(server: Server, http: httpx.Client) -> None:
    r = http.post("/detokenize", json={"tokens": [1, 49152]})
    assert r.status_code == 400
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == ("tokens", "invalid_token")
    r = http.post("/tokenize", json={"model": "other", "prompt": "Hi"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = http.post("/tokenize", json={"prompt": "x" * 200_000})  # beyond 2048 tokens of at most 81 characters
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert httpx.post(server.base_url + "/tokenize", json={"prompt": "Hi"}).status_code == 401
