"""The runtime's spans: a request continues the client's W3C trace, with its steps as children; probes are not
traced; with tracing off nothing is (docs/tracing.md)."""

from __future__ import annotations

import pytest

from helpers.spans import CLIENT_PARENT, CLIENT_TRACE, TRACEPARENT, by_name, hex_id, recorded
from vif.runtime.shared.tracing import Tracing, traces_endpoint

MODEL = "smollm2-135m-instruct"


async def test_a_request_continues_the_clients_trace_with_its_steps_as_children(make_client) -> None:
    tracing, exporter = recorded()
    client = await make_client(tracing=tracing)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    answer = await client.post("/v1/chat/completions", json=body, headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200
    await client.get("/health")
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"POST /v1/chat/completions", "receive", "prepare", "engine"}  # /health: not traced
    server = spans["POST /v1/chat/completions"]
    assert hex_id(server.context.trace_id, 32) == CLIENT_TRACE and hex_id(server.parent.span_id, 16) == CLIENT_PARENT
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["vif.request_id"] == answer.headers["x-request-id"]
    for step in ("receive", "prepare", "engine"):
        assert spans[step].parent.span_id == server.context.span_id
    usage = answer.json()["usage"]
    assert spans["engine"].attributes["gen_ai.usage.completion_tokens"] == usage["completion_tokens"]


async def test_a_stream_is_one_span_and_a_request_without_traceparent_starts_a_trace(make_client) -> None:
    tracing, exporter = recorded()
    client = await make_client(tracing=tracing)
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 3, "stream": True}
    assert (await client.post("/v1/completions", json=body)).status_code == 200
    spans = by_name(exporter.get_finished_spans())
    assert "stream" in spans and spans["POST /v1/completions"].parent is None


@pytest.mark.parametrize(
    ("env", "given", "expected"),
    [
        ({}, None, None),
        ({}, "http://collector:4317", "http://collector:4317"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://a:4317"}, None, "http://a:4317"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4317"}, None, "http://b:4317"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318/", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, None,
         "http://b:4318/v1/traces"),
    ],
)  # fmt: skip
def test_the_endpoint_comes_from_the_flag_else_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], given: str | None, expected: str | None
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert traces_endpoint(given) == expected
    if expected is None:
        assert not Tracing.start("vif-runtime", given).on  # off: nothing imported, nothing exported
