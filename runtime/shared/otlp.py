"""What OTLP export of traces (`tracing.py`) and logs (here) shares: where each signal goes, over which protocol,
from which service, as every OpenTelemetry SDK reads it from the standard environment (docs/tracing.md)."""

from __future__ import annotations

import logging
import os
from typing import Any


def otlp_endpoint(signal: str, given: str | None = None) -> str | None:
    """Where `signal`'s data (`traces`, `logs`) goes: the flag's endpoint, else `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`,
    else the generic `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, under which OTLP over HTTP posts to `/v1/<signal>`);
    None: not exported."""
    own = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if given or own:
        return given or own
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base and protocol(signal) == "http/protobuf":
        return f"{base.rstrip('/')}/v1/{signal}"
    return base or None


def protocol(signal: str) -> str:
    """`grpc` (the default) or `http/protobuf`."""
    own = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
    return own or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"


def insecure(endpoint: str) -> bool | None:
    """gRPC without TLS for an `http://` endpoint; otherwise the exporter decides (`https://`, or a bare `host:port`
    with `OTEL_EXPORTER_OTLP_INSECURE`), as vLLM's own exporter and every SDK do."""
    return True if endpoint.startswith("http://") else None


def resource(service: str) -> Any:
    """Who the data is from: `service`, unless `OTEL_SERVICE_NAME` says otherwise (`OTEL_RESOURCE_ATTRIBUTES` adds
    more)."""
    from opentelemetry.sdk.resources import Resource

    return Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service})


def export_logs(service: str, endpoint: str | None, logger: logging.Logger, *filters: logging.Filter) -> Any:
    """Send `logger`'s records over OTLP too, beside its own handlers: each with the trace and span it was logged
    in, and the attributes `filters` stamp on it (the request id). The provider, to shut down at exit; None when
    no endpoint is set."""
    endpoint = otlp_endpoint("logs", endpoint)
    if endpoint is None:
        return None
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(resource=resource(service))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter("logs", endpoint)))
    handler = LoggingHandler(logger_provider=provider)
    for each in filters:
        handler.addFilter(each)
    logger.addHandler(handler)
    return provider


def exporter(signal: str, endpoint: str) -> Any:
    """The SDK's OTLP exporter of `signal` (`traces`, `logs`), over gRPC or HTTP as `protocol` says. Imported by
    name, so tests/test_imports.py sees what the router needs."""
    if protocol(signal) == "http/protobuf":
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpans

            return HTTPSpans(endpoint=endpoint)
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HTTPLogs

        return HTTPLogs(endpoint=endpoint)
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCSpans

        return GRPCSpans(endpoint=endpoint, insecure=insecure(endpoint))
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GRPCLogs

    return GRPCLogs(endpoint=endpoint, insecure=insecure(endpoint))
