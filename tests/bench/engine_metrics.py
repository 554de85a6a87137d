"""The engine's own account of a load, read from a server's /metrics before and after it.

Both servers export vLLM's engine metrics under the same names, so the same counters say, for each: how many
engine steps the load took, how long a step was on average (the load's wall time over its steps; the engine is
busy throughout a closed-loop load), how many tokens a step carried, and a request's mean latency as the engine
counts it: from the arrival time the front end stamps (both servers stamp it before rendering and tokenising) to
the last token. The client's mean end-to-end latency minus the engine's is the rest of a request's latency in the
front end: reading the body, the HTTP exchange and streaming.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = list[tuple[str, dict[str, str], float]]

# Every label set of a series is summed: one model, one engine.
SERIES = {
    "steps": "vllm:iteration_tokens_total_count",
    "step_tokens": "vllm:iteration_tokens_total_sum",
    "e2e_s": "vllm:e2e_request_latency_seconds_sum",
    "requests": "vllm:e2e_request_latency_seconds_count",
}


def scrape(port: int) -> Samples:
    """A server's /metrics as (sample name, labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: Samples, name: str) -> float:
    return sum(value for sample, _, value in samples if sample == name)


def engine_counters(port: int) -> dict[str, float]:
    """The current value of each series in SERIES."""
    samples = scrape(port)
    return {key: total(samples, name) for key, name in SERIES.items()}


def engine_summary(
    before: dict[str, float], after: dict[str, float], duration_s: float, client_e2e_ms: float
) -> dict[str, float]:
    """Steps, mean step time (ms), tokens per step, mean engine latency (ms) and the front end's share (ms) of
    the client's mean end-to-end latency `client_e2e_ms`, over one load."""
    delta = {key: after[key] - before[key] for key in SERIES}
    steps, requests = max(delta["steps"], 1.0), max(delta["requests"], 1.0)
    engine_e2e_ms = delta["e2e_s"] * 1000 / requests
    return {
        "engine_steps": delta["steps"],
        "step_ms": duration_s * 1000 / steps,
        "tokens_per_step": delta["step_tokens"] / steps,
        "engine_e2e_ms": engine_e2e_ms,
        "front_ms": client_e2e_ms - engine_e2e_ms,
    }
