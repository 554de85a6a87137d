"""A download's progress, kept for whoever asks: `vif-runtime fetch --progress-port` serves it as JSON on
`GET /progress`, and the operator reads it from the pod into the model's status (`kubectl get im`).

The operator asks rather than being told: the download's pod holds the model's token and never gets API access,
so it cannot write anything anywhere but the cache.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vif.runtime.sources.fetch import Progress

PHASES = ("Pending", "Downloading", "Verifying", "Ready", "Failed")


@dataclass
class DownloadProgress:
    """One download's phase, bytes and failure; thread-safe (the download's thread writes, the server's reads)."""

    phase: str = "Pending"
    done: int = 0
    total: int = 0
    message: str = ""
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reporter(self, what: str, total: int) -> Progress:
        """A `ProgressFactory`: the download of `total` bytes starts; the callback counts what arrives. Once every
        byte is there, the last file's checksum is being computed: Verifying."""
        with self._lock:
            self.phase, self.total, self.done, self.started = "Downloading", total, 0, time.monotonic()

        def update(n: int) -> None:
            with self._lock:
                self.done += n
                self.phase = "Verifying" if self.done >= self.total else "Downloading"

        return update

    def finish(self) -> None:
        with self._lock:
            self.phase, self.done = "Ready", max(self.done, self.total)

    def fail(self, message: str) -> None:
        with self._lock:
            self.phase, self.message = "Failed", message

    def snapshot(self) -> dict[str, Any]:
        """The JSON the operator reads: phase, bytes done and total, bytes per second and seconds left (both
        None until known), and the failure's message."""
        with self._lock:
            elapsed = time.monotonic() - self.started
            rate = self.done / elapsed if self.phase == "Downloading" and elapsed > 0 and self.done > 0 else None
            left = (self.total - self.done) / rate if rate else None
            return {"phase": self.phase, "bytesDone": self.done, "bytesTotal": self.total,
                    "bytesPerSecond": None if rate is None else round(rate),
                    "secondsLeft": None if left is None else round(left), "message": self.message}  # fmt: skip


@contextmanager
def serving_progress(progress: DownloadProgress, host: str, port: int) -> Iterator[ThreadingHTTPServer]:
    """`GET /progress` on `host`:`port` in a daemon thread while inside the `with`; anything else is a 404."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/progress":
                self.send_error(404)
                return
            body = json.dumps(progress.snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the operator asks every few seconds: no lines
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="vif-progress", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
