"""OpenAI Chat and Completions on the real engine, through the official `openai` SDK."""

from __future__ import annotations

import openai
import pytest

from .conftest import MODEL, Server

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)


def test_chat_answers(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=20)
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 10 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_stream_matches_plain(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=20)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_chat_n_logprobs_and_seed(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL, "messages": QUESTION, "max_tokens": 8, "n": 2, "seed": 1234, "temperature": 1.0}
    first = client.chat.completions.create(**kwargs, logprobs=True, top_logprobs=2)
    again = client.chat.completions.create(**kwargs)
    assert [c.index for c in first.choices] == [0, 1]
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]
    content = first.choices[0].logprobs.content
    assert len(content) == first.usage.completion_tokens // 2
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)


def test_chat_stop_sequence(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=20, stop=["Paris"])
    assert "Paris" not in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"


def test_completion_with_echo_and_logprobs(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    reply = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=5, logprobs=2, echo=True)
    choice = reply.choices[0]
    assert choice.text.startswith(prompt + " Paris")
    assert choice.logprobs.token_logprobs[0] is None  # the first prompt token has no logprob
    assert len(choice.logprobs.tokens) == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert all(len(top) == 2 for top in choice.logprobs.top_logprobs[1:])


def test_completion_batch_and_stream(client: openai.OpenAI) -> None:
    batch = client.completions.create(model=MODEL, prompt=["One, two,", "Red, green,"], temperature=0, max_tokens=4)
    assert [c.index for c in batch.choices] == [0, 1]
    stream = client.completions.create(model=MODEL, prompt="One, two,", temperature=0, max_tokens=4, stream=True)
    assert "".join(c.choices[0].text for c in stream) == batch.choices[0].text


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]


def test_errors_are_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=QUESTION)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=3)
    assert bad.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model=MODEL, prompt="hi", max_tokens=5000)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as out_of_vocabulary:
        client.completions.create(model=MODEL, prompt=[1, 10_000_000], max_tokens=2)
    assert out_of_vocabulary.value.code == "invalid_token" and out_of_vocabulary.value.param == "prompt"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).models.list()
