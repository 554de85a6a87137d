"""One request through the router is one trace in a real collector (Jaeger, tests/helpers/jaeger.py): the router's,
the runtime's and vLLM's own engine span, each a child of the one before, continuing the client's traceparent; and
the runtime's log lines reach the collector with the request id and the trace id (docs/tracing.md)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from helpers.jaeger import LogRecord, Span, running_jaeger
from helpers.processes import stop_group
from helpers.router_process import running_router
from helpers.runtime_process import MODEL, start_runtime
from helpers.spans import CLIENT_PARENT, CLIENT_TRACE, TRACEPARENT
from helpers.waits import wait_for

WANTED = {
    ("vif-router", "POST /v1/chat/completions"), ("vif-router", "route"), ("vif-router", "forward"),
    ("vif-runtime", "POST /v1/chat/completions"), ("vif-runtime", "receive"), ("vif-runtime", "prepare"),
    ("vif-runtime", "engine"), ("vif-runtime", "llm_request"),
}  # fmt: skip


def test_one_request_through_the_router_is_one_trace_down_to_the_engine_and_its_logs_carry_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for batched in ("OTEL_BSP_SCHEDULE_DELAY", "OTEL_BLRP_SCHEDULE_DELAY"):  # spans, logs: every 0.2 s, not 5 s
        monkeypatch.setenv(batched, "200")
    with running_jaeger(tmp_path / "jaeger") as jaeger:
        (tmp_path / "runtime").mkdir()
        runtime = start_runtime(tmp_path / "runtime", "--otlp-traces-endpoint", jaeger.otlp_grpc,
                                "--otlp-logs-endpoint", jaeger.otlp_grpc)  # fmt: skip
        try:
            router_args = ("--endpoint", runtime.base_url, "--otlp-traces-endpoint", jaeger.otlp_grpc)
            with running_router(tmp_path, *router_args) as router:
                body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
                answer = httpx.post(f"{router}/v1/chat/completions", json=body, headers={"traceparent": TRACEPARENT},
                                    timeout=120)  # fmt: skip
                assert answer.status_code == 200

                def complete() -> list[Span] | None:
                    spans = jaeger.trace(CLIENT_TRACE)
                    return spans if {(s.service, s.name) for s in spans} >= WANTED else None

                spans = wait_for(complete, "the router's, the runtime's and the engine's spans in Jaeger", 60)
                request_id = answer.headers["x-request-id"]

                def logged() -> list[LogRecord]:
                    return [r for r in jaeger.log_records() if r.attributes.get("request_id") == request_id]

                records = wait_for(logged, "the request's log lines at the collector", 60)
        finally:
            stop_group(runtime.proc)
    one = {(s.service, s.name): s for s in spans}
    assert one["vif-router", "POST /v1/chat/completions"].parent_id == CLIENT_PARENT
    assert one["vif-runtime", "POST /v1/chat/completions"].parent_id == one["vif-router", "forward"].span_id
    assert one["vif-runtime", "engine"].parent_id == one["vif-runtime", "POST /v1/chat/completions"].span_id
    assert one["vif-runtime", "llm_request"].parent_id == one["vif-runtime", "engine"].span_id
    engine = one["vif-runtime", "llm_request"].attributes
    assert engine["gen_ai.usage.completion_tokens"] == answer.json()["usage"]["completion_tokens"]
    assert one["vif-runtime", "POST /v1/chat/completions"].attributes["vif.request_id"] == request_id
    (access,) = [r for r in records if r.body.startswith("POST /v1/chat/completions 200")]
    assert access.trace_id == CLIENT_TRACE  # the line is the trace's: a log search by trace id finds it
