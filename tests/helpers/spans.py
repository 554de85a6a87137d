"""Spans kept in memory by the OpenTelemetry SDK's own exporter, for unit tests of what vif traces (no collector)."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vif.runtime.shared.tracing import Tracing

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"  # W3C's own example: a sampled trace


def recorded() -> tuple[Tracing, InMemorySpanExporter]:
    """A `Tracing` whose spans end up in the returned exporter (the global tracer provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider.get_tracer("vif"), provider), exporter


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")
