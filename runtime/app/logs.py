"""Logging to the console or a rotating file, as text or JSON, each line carrying the request id (and, while
tracing, the trace id); and to an OTLP collector too when one is set (docs/tracing.md)."""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
from pathlib import Path

import orjson
from opentelemetry.trace import get_current_span

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request being served (`-` outside a request) and, while tracing, the
    trace and span it was logged in (docs/tracing.md)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        context = get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id, record.span_id = format(context.trace_id, "032x"), format(context.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message (and the trace, the tenant and the
    exception, where there are)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        for traced in ("trace_id", "span_id", "tenant"):
            if hasattr(record, traced):
                line[traced] = getattr(record, traced)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(
    level: str = "INFO",
    fmt: str = "text",
    file: Path | None = None,
    max_bytes: int = 50 << 20,
    backups: int = 5,
) -> logging.Handler:
    """Install one handler on the `vif` logger tree; returns it so tests and callers can detach it."""
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler()
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger("vif")
    root.handlers = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    return handler
