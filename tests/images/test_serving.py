"""The runtime image serves the default model baked into it, with nothing added (its KV cache sized by the runtime
itself): the three protocols."""

from __future__ import annotations

import httpx

MODEL = "smollm2-135m-instruct"


def test_the_image_serves_the_three_protocols(serving: str) -> None:
    with httpx.Client(base_url=serving, timeout=120) as client:
        question = [{"role": "user", "content": "What is the capital of France?"}]
        chat = client.post("/v1/chat/completions", json={"messages": question, "temperature": 0, "max_tokens": 20})
        assert "Paris" in chat.json()["choices"][0]["message"]["content"]
        completion = client.post(
            "/v1/completions", json={"prompt": "The capital of France is", "temperature": 0, "max_tokens": 4}
        )
        assert "Paris" in completion.json()["choices"][0]["text"]
        generate = client.post("/generate", json={"prompt": "And of Germany?", "max_tokens": 10})
        assert generate.json()["object"] == "generate" and generate.json()["output"]
        assert client.get("/v1/models").json()["data"][0]["id"] == MODEL
