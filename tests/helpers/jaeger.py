"""A real OTLP collector for the tracing tests: Jaeger v2 (`make test-servers` builds it from e2e/tracing, at the
version its go.mod pins), keeping traces in memory; spans are read back through its query API, as a user reads them
in Jaeger's UI."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from helpers.processes import answers, free_port, stop_group
from helpers.waits import wait_for

REPO = Path(__file__).resolve().parents[2]
TRACING = REPO / "e2e/tracing"
VERSION = re.search(r"github.com/jaegertracing/jaeger v([0-9.]+)", (TRACING / "go.mod").read_text())[1]  # type: ignore[index]
JAEGER = Path(os.environ.get("VIF_TOOLS", Path.home() / ".cache/vif/tools")) / f"jaeger-{VERSION}" / "jaeger"


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]


@dataclass
class Jaeger:
    otlp_grpc: str  # where spans go: http://127.0.0.1:PORT
    query: str  # the query API's base URL
    log: Path

    def trace(self, trace_id: str) -> list[Span]:
        """The spans Jaeger holds of one trace (none yet: an empty list)."""
        answer = httpx.get(f"{self.query}/api/traces/{trace_id}", timeout=10)
        if answer.status_code == 404:
            return []
        answer.raise_for_status()
        spans = []
        for trace in answer.json()["data"] or []:
            services = {key: process["serviceName"] for key, process in trace["processes"].items()}
            for span in trace["spans"]:
                parents = [r["spanID"] for r in span.get("references") or [] if r["refType"] == "CHILD_OF"]
                tags = {tag["key"]: tag["value"] for tag in span.get("tags") or []}
                spans.append(Span(services[span["processID"]], span["operationName"], span["spanID"],
                                  parents[0] if parents else None, tags))  # fmt: skip
        return spans

    def log_records(self) -> list[LogRecord]:
        """The log records it received so far, as its debug exporter wrote them to its console (Jaeger keeps
        traces, not logs: e2e/tracing/jaeger.yaml)."""
        records = []
        for block in self.log.read_text(errors="replace").split("LogRecord #")[1:]:
            body = re.search(r"^Body: \w+\((.*)\)$", block, re.MULTILINE)
            trace = re.search(r"^Trace ID: (\w*)$", block, re.MULTILINE)
            attributes = dict(re.findall(r"^ +-> ([\w.]+): \w+\((.*)\)$", block.split("Trace ID:")[0], re.MULTILINE))
            records.append(LogRecord(body[1] if body else "", attributes, trace[1] if trace else ""))
        return records


@dataclass(frozen=True)
class LogRecord:
    body: str
    attributes: dict[str, str]
    trace_id: str


@contextlib.contextmanager
def running_jaeger(workdir: Path) -> Iterator[Jaeger]:
    """Jaeger on free loopback ports (e2e/tracing/jaeger.yaml); fails with its log if it does not answer in time."""
    if not JAEGER.exists():
        raise RuntimeError(f"{JAEGER} is missing: run `make test-servers`")
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("QUERY", "QUERY_GRPC", "OTLP_GRPC", "OTLP_HTTP")}
    env = {**os.environ, **{f"JAEGER_{name}_PORT": str(port) for name, port in ports.items()}}
    log = workdir / "jaeger.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(JAEGER), "--config", f"file:{TRACING / 'jaeger.yaml'}"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=workdir)  # fmt: skip
    jaeger = Jaeger(f"http://127.0.0.1:{ports['OTLP_GRPC']}", f"http://127.0.0.1:{ports['QUERY']}", log)
    try:
        with contextlib.suppress(AssertionError):
            wait_for(lambda: proc.poll() is not None or answers(f"{jaeger.query}/api/services"), "Jaeger answering",
                     timeout=60, every=0.2)  # fmt: skip
        if proc.poll() is not None or not answers(f"{jaeger.query}/api/services"):
            raise RuntimeError(f"Jaeger did not start: {log.read_text()[-3000:]}")
        yield jaeger
    finally:
        stop_group(proc, grace=5)
