"""Log lines carry the request id (and, in a span, the trace), as text or JSON, on the console or in a rotating file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers.spans import CLIENT_TRACE, TRACEPARENT, recorded
from vif.runtime.app.logs import configure_logging, request_id_var


@pytest.fixture(autouse=True)
def restore_vif_logger():
    logger = logging.getLogger("vif")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_json_lines_in_a_rotating_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "vif.log"
    handler = configure_logging("info", "json", log_file, max_bytes=400, backups=2)
    token = request_id_var.set("req-42")
    try:
        for i in range(20):
            logging.getLogger("vif.runtime.test").info("line %d", i)
    finally:
        request_id_var.reset(token)
    handler.flush()
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines and all(line["request_id"] == "req-42" for line in lines)
    assert lines[-1]["message"] == "line 19" and lines[-1]["level"] == "INFO"
    assert sorted(p.name for p in log_file.parent.iterdir()) == ["vif.log", "vif.log.1", "vif.log.2"]


def test_text_lines_outside_a_request(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "text")
    logging.getLogger("vif.runtime.test").debug("hello")
    err = capsys.readouterr().err
    assert "DEBUG vif.runtime.test [-] hello" in err


def test_a_json_line_logged_in_a_span_carries_its_trace(tmp_path: Path) -> None:
    """So a log search by trace id finds the lines of one request (docs/tracing.md); outside a span, no such field."""
    log_file = tmp_path / "vif.log"
    handler = configure_logging("info", "json", log_file)
    tracing, _ = recorded()
    with tracing.server("POST /v1/completions", [(b"traceparent", TRACEPARENT.encode())]) as span:
        logging.getLogger("vif.runtime.test").info("inside")
    logging.getLogger("vif.runtime.test").info("outside")
    handler.flush()
    inside, outside = (json.loads(line) for line in log_file.read_text().splitlines())
    assert (inside["trace_id"], inside["span_id"]) == (CLIENT_TRACE, format(span.get_span_context().span_id, "016x"))
    assert "trace_id" not in outside
