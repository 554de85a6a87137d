"""The router's Prometheus metrics, in a registry of its own.

Gauges are read at scrape time from the endpoint set and the holding queue (no second copy of those counts to
keep in step); counters are bumped by the proxy. `vif_router_pending_requests` is what an autoscaler watches to
scale a model up from zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.kv_index import KvIndex
from vif.runtime.router.usage import UsageMeter


class EndpointCollector(Collector):
    """In flight and readiness per endpoint, and pending requests, as they are at the scrape."""

    def __init__(self, model: str, endpoints: EndpointSet, pending: Callable[[], int]) -> None:
        self.model = model
        self.endpoints = endpoints
        self.pending = pending

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "vif_router_pending_requests", "Requests waiting for a ready replica.", labels=["model"]
        )
        pending.add_metric([self.model], self.pending())
        in_flight = GaugeMetricFamily(
            "vif_router_endpoint_in_flight", "Requests this router has in flight to a replica.", labels=["endpoint"]
        )
        ready = GaugeMetricFamily(
            "vif_router_endpoint_ready", "1 while the router routes to a replica.", labels=["endpoint"]
        )
        for endpoint in self.endpoints.members:
            in_flight.add_metric([endpoint.url], endpoint.in_flight)
            ready.add_metric([endpoint.url], 1 if endpoint.ready else 0)
        yield from (pending, in_flight, ready)


class KvIndexCollector(Collector):
    """kv-aware: what the router knows of each replica's KV cache, from its events."""

    def __init__(self, index: KvIndex) -> None:
        self.index = index

    def collect(self) -> Iterator[Metric]:
        blocks = GaugeMetricFamily(
            "vif_router_kv_cached_blocks", "Blocks a replica's KV events say it holds.", labels=["endpoint"]
        )
        sequence = GaugeMetricFamily(
            "vif_router_kv_events_sequence", "The last KV event batch applied from a replica.", labels=["endpoint"]
        )
        for url, held in self.index.replicas.items():
            blocks.add_metric([url], len(held))
            sequence.add_metric([url], held.sequence)
        yield from (blocks, sequence)


class RouterMetrics:
    """Counters of what the router decided and what went wrong, and the scrape-time gauges above."""

    def __init__(
        self, model: str, endpoints: EndpointSet, pending: Callable[[], int], registry: CollectorRegistry | None = None
    ) -> None:
        self.model = model
        self.registry = registry or CollectorRegistry()
        self.registry.register(EndpointCollector(model, endpoints, pending))
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes: held bodies live in memory
        self.requests = Counter(
            "vif_router_requests", "Requests by model and the status the client got.", ["model", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.decisions = Counter(
            "vif_router_routing_decisions", "Replica choices by strategy and outcome.", ["strategy", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.retries = Counter(
            "vif_router_retries", "Requests sent again to another replica, by the failure.", ["reason"],
            registry=self.registry,
        )  # fmt: skip
        self.ejections = Counter(
            "vif_router_ejections", "Replicas taken out of routing, by endpoint and failure.", ["endpoint", "reason"],
            registry=self.registry,
        )  # fmt: skip
        # Per tenant (docs/tenants.md): named by the tenants file, so their number is bounded by configuration.
        self.tenant_requests = Counter(
            "vif_router_tenant_requests", "Requests by tenant and the status the client got (429: over a limit).",
            ["model", "tenant", "status"], registry=self.registry,
        )  # fmt: skip
        self.tenant_tokens = Counter(
            "vif_router_tenant_tokens", "Tokens served by tenant and kind (prompt, completion).",
            ["model", "tenant", "kind"], registry=self.registry,
        )  # fmt: skip
        self.queue_seconds = Histogram(
            "vif_router_tenant_queue_seconds", "Time a tenant's requests waited for a place among those in flight.",
            ["model", "tenant"], buckets=(0.005, 0.05, 0.25, 1, 2.5, 5, 10, 30, 60), registry=self.registry,
        )  # fmt: skip
        self.quota_store_errors = Counter(
            "vif_router_quota_store_errors", "Rate-limit decisions taken while Redis could not be reached.",
            ["model"], registry=self.registry,
        )  # fmt: skip

    def count_tenant(self, tenant: str, status: int | str, meter: UsageMeter | None) -> None:
        self.tenant_requests.labels(self.model, tenant, str(status)).inc()
        if meter is not None:
            self.tenant_tokens.labels(self.model, tenant, "prompt").inc(meter.prompt_tokens)
            self.tenant_tokens.labels(self.model, tenant, "completion").inc(meter.completion_tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
