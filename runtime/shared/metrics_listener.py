"""`/metrics` on a port of its own, for the runtime and the router (`--metrics-port`).

On the API's port, `/metrics` answers anyone who can reach the API, with or without a key (Prometheus has none).
On a port of its own it can be fenced apart: the operator's NetworkPolicy lets the monitoring namespace reach
only this port, and clients only the API's. It runs on a thread of its own with the standard library's server,
outside the event loop: a scrape never waits behind requests, and it still answers while the loop is busy.
Prometheus' client renders on that thread; its metrics are thread-safe.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsListener:
    """`GET /metrics` (the exposition `render` returns) on `host`:`port`; anything else is a 404."""

    def __init__(self, host: str, port: int, render: Callable[[], bytes]) -> None:
        handler = type("MetricsHandler", (_Handler,), {"render": staticmethod(render)})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics-listener", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> MetricsListener:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def metrics_port(host: str, port: int | None, render: Callable[[], bytes]) -> Iterator[None]:
    """A MetricsListener on `port` while inside; nothing when `port` is None (/metrics stays on the API's port)."""
    if port is None:
        yield
        return
    listener = MetricsListener(host, port, render).start()
    try:
        yield
    finally:
        listener.stop()


class _Handler(BaseHTTPRequestHandler):
    render: Callable[[], bytes]

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, b"only /metrics here\n", "text/plain; charset=utf-8")
            return
        self._answer(200, self.render(), CONTENT_TYPE)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged: one every few seconds would drown the request log."""
