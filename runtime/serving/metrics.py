"""Prometheus metrics of the runtime. vLLM's own engine metrics land in the same registry.

Success rate is `sum(rate(vif_requests_total{status=~"2.."}[5m])) / sum(rate(vif_requests_total[5m]))`.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RuntimeMetrics:
    """The runtime's counters and histograms, all labelled with the served model and the protocol.

    The served model is the name a request named: the base model's or a LoRA adapter's (`model` below; None is
    the base). In-flight requests, and requests refused before they are prepared, count under the base model's
    name, since the adapter is known only once the body has been read and checked.
    """

    def __init__(self, model: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.model = model
        self.registry = registry
        labels = ("model", "protocol")
        self.requests = Counter(
            "vif_requests",
            "Requests by model, protocol and HTTP status.",
            (*labels, "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "vif_request_duration_seconds",
            "Time from request to the last byte of the response.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "vif_time_to_first_token_seconds",
            "Time from the engine request to its first generated token.",
            labels,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter("vif_prompt_tokens", "Prompt tokens processed.", labels, registry=registry)
        self.completion_tokens = Counter(
            "vif_completion_tokens", "Completion tokens generated.", labels, registry=registry
        )
        self.errors = Counter(
            "vif_errors", "Error responses by OpenAI error type.", (*labels, "type"), registry=registry
        )
        self.in_flight = Gauge("vif_requests_in_flight", "Requests being served now.", labels, registry=registry)
        self.cache_lookups = Counter(
            "vif_response_cache_lookups",
            "Response cache lookups of cacheable requests: hit, miss, or bypass (Cache-Control: no-cache, no-store).",
            (*labels, "result"),
            registry=registry,
        )
        self.cache_entries = Gauge(
            "vif_response_cache_entries", "Responses in the cache.", ("model",), registry=registry
        )
        self.cache_bytes = Gauge(
            "vif_response_cache_bytes", "Bytes of the responses in the cache.", ("model",), registry=registry
        )

        self.live_config_refused = Gauge(
            "vif_live_config_refused",
            "1 while the newest version of the live configuration's files was refused (the previous one serves).",
            ("model",),
            registry=registry,
        )

    def request_started(self, protocol: str) -> None:
        self.in_flight.labels(self.model, protocol).inc()

    def request_finished(self, protocol: str, status: int, seconds: float, model: str | None = None) -> None:
        self.in_flight.labels(self.model, protocol).dec()
        self.requests.labels(model or self.model, protocol, str(status)).inc()
        self.latency.labels(model or self.model, protocol).observe(seconds)

    def observe_first_token(self, protocol: str, seconds: float, model: str | None = None) -> None:
        self.ttft.labels(model or self.model, protocol).observe(seconds)

    def count_tokens(self, protocol: str, prompt: int, completion: int, model: str | None = None) -> None:
        self.prompt_tokens.labels(model or self.model, protocol).inc(prompt)
        self.completion_tokens.labels(model or self.model, protocol).inc(completion)

    def count_error(self, protocol: str, error_type: str, model: str | None = None) -> None:
        self.errors.labels(model or self.model, protocol, error_type).inc()

    def count_cache_lookup(self, protocol: str, result: str, model: str | None = None) -> None:
        self.cache_lookups.labels(model or self.model, protocol, result).inc()

    def watch_cache(self, entries: Callable[[], float], size: Callable[[], float]) -> None:
        """The cache's size, read when /metrics is scraped."""
        self.cache_entries.labels(self.model).set_function(entries)
        self.cache_bytes.labels(self.model).set_function(size)

    def watch_live_config(self, refused: Callable[[], bool]) -> None:
        self.live_config_refused.labels(self.model).set_function(lambda: float(refused()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
