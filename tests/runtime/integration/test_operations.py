"""Probes, metrics (ours and vLLM's), API keys, logs and abort-on-disconnect, on the real engine."""

from __future__ import annotations

import json
import re

import httpx

from helpers.cluster import wait_for
from helpers.exposition import metric

from .conftest import Server


def test_probes_and_openapi_are_open(server: Server) -> None:
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert httpx.get(server.base_url + path).status_code == 200
    assert httpx.get(server.base_url + "/v1/models").status_code == 401


def test_metrics_hold_vif_and_vllm_series(http: httpx.Client) -> None:
    http.post("/generate", json={"prompt": "Hi", "max_tokens": 3})

    # the request is counted once its response has gone out, so the count may trail the client a moment
    def counted() -> bool:
        return metric(http.get("/metrics").text, "vif_requests_total", protocol="generate", status="200") >= 1

    wait_for(counted, "the request in vif_requests_total", timeout=10)
    text = http.get("/metrics").text
    assert metric(text, "vif_completion_tokens_total", protocol="generate") >= 1
    assert metric(text, "vif_time_to_first_token_seconds_count", protocol="generate") >= 1
    assert re.search(r"^vllm:prompt_tokens_total\{", text, re.M), "vLLM's engine metrics are missing"


def test_client_disconnect_aborts_the_engine_request(server: Server, http: httpx.Client) -> None:
    """1500 tokens would take the engine over a minute; leaving after the first chunk must stop it at once."""
    request = {"prompt": "Count to a thousand:", "max_tokens": 1500, "ignore_eos": True, "stream": True}
    headers = {"X-Request-Id": "abort-me-1"}
    with server.client() as client, client.stream("POST", "/v1/completions", json=request, headers=headers) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # leave after the first chunk: the connection closes
    wait_for(
        lambda: metric(http.get("/metrics").text, "vllm:num_requests_running") == 0, "no engine request running", 30
    )
    log = [json.loads(line) for line in server.log_file.read_text().splitlines()]
    assert any(line["message"].startswith("aborted engine request cmpl-abort-me-1-0-") for line in log)
    assert http.post("/generate", json={"prompt": "Still there?", "max_tokens": 3}).status_code == 200


def test_logs_are_json_lines_with_the_request_id(server: Server, http: httpx.Client) -> None:
    http.post("/generate", json={"prompt": "Hi", "max_tokens": 2}, headers={"X-Request-Id": "trace-me-123"})

    def access_line() -> list[dict]:
        # the access line is written once the response has gone out, so it may trail the client a moment
        lines = [json.loads(line) for line in server.log_file.read_text().splitlines()]
        return [li for li in lines if li["request_id"] == "trace-me-123" and "POST /generate 200" in li["message"]]

    wait_for(access_line, "the request's access log line", timeout=10)
