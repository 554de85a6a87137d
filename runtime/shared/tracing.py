"""OpenTelemetry traces of the runtime and the router (docs/tracing.md), exported over OTLP; off unless an endpoint
is given (`--otlp-traces-endpoint`, vLLM's own flag, or the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
`OTEL_EXPORTER_OTLP_ENDPOINT`).

A request's span continues the client's W3C `traceparent`, the router passes its own on to the replica, and the
runtime passes the current one to vLLM (`trace_headers`), whose `llm_request` span joins the trace. The SDK reads
the standard `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`,
as every OpenTelemetry SDK does. Off, every call is a no-op and the SDK is not imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from vif.runtime.shared.otlp import exporter, otlp_endpoint, resource

PROPAGATED = (b"traceparent", b"tracestate")
TRACES_FLUSH_SECONDS = 5.0  # at exit, the spans left get this long to go out


def traces_endpoint(given: str | None = None) -> str | None:
    """Where spans go (`otlp.otlp_endpoint`); None: tracing off."""
    return otlp_endpoint("traces", given)


class Tracing:
    """Spans of one process. `Tracing()` is off; `Tracing.start(...)` exports them."""

    def __init__(self, tracer: Any = None, provider: Any = None) -> None:
        self._tracer = tracer
        self._provider = provider

    @property
    def on(self) -> bool:
        return self._tracer is not None

    @classmethod
    def start(cls, service: str, endpoint: str | None) -> Tracing:
        """Export to `endpoint` (gRPC, or HTTP with `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf`) as
        `service` (unless `OTEL_SERVICE_NAME` says otherwise); off without an endpoint."""
        endpoint = traces_endpoint(endpoint)
        if endpoint is None:
            return cls()
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import set_tracer_provider

        # the sampler: OTEL_TRACES_SAMPLER, else the SDK's default (parent-based, every root)
        provider = TracerProvider(resource=resource(service))
        provider.add_span_processor(BatchSpanProcessor(exporter("traces", endpoint)))
        set_tracer_provider(provider)  # vLLM's engine spans, made in this process, go through it too
        return cls(provider.get_tracer("vif"), provider)

    @contextlib.contextmanager
    def server(self, name: str, headers: Iterable[tuple[bytes, bytes]], **attributes: Any) -> Iterator[Any]:
        """A request's span, continuing the trace its `traceparent` names; the span, or None when off."""
        if self._tracer is None:
            yield None
            return
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k.lower() in PROPAGATED}
        with self._tracer.start_as_current_span(
            name, context=extract(carrier), kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            yield span

    @contextlib.contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Any]:
        """A step of the current request's span; the span, or None when off."""
        if self._tracer is None:
            yield None
            return
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def outgoing(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """`headers` for a request this span makes: the client's trace headers replaced by the current span's."""
        if self._tracer is None:
            return headers
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier)
        kept = [(k, v) for k, v in headers if k.lower() not in PROPAGATED]
        return kept + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items()]

    def shutdown(self) -> None:
        """Export what is left (the process is ending)."""
        if self._provider is not None:
            self._provider.shutdown()

    async def aclose(self, within: float = TRACES_FLUSH_SECONDS) -> None:
        """`shutdown` off the event loop, for at most `within` seconds: a collector that is down must not eat a
        pod's grace period."""
        if self._provider is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(self.shutdown), within)


def current_trace_headers() -> dict[str, str] | None:
    """The current span's `traceparent` (and `tracestate`), for vLLM's `trace_headers`; None without one."""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier or None
