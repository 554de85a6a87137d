"""uvicorn with a shutdown Kubernetes can rely on.

SIGTERM: `/ready` answers 503 at once and the listener stays open `drain_seconds` (endpoints take a moment
to drop a terminating pod); then the listener closes, in-flight requests get `shutdown_timeout` to finish and
are then aborted, each with a final error; the process exits 0. A second SIGTERM, or SIGINT (Ctrl-C), stops at
once as plain uvicorn does. `fail()` (the engine died) stops the server and makes `run` report failure.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from types import FrameType

import uvicorn

from vif.runtime.app.lifecycle import Lifecycle

BACKSTOP_SECONDS = 5  # uvicorn's own timeout, past ours, cancels whatever is still running


class GracefulServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, lifecycle: Lifecycle, drain_seconds: float, shutdown_timeout: float
    ) -> None:
        config.timeout_graceful_shutdown = int(shutdown_timeout) + BACKSTOP_SECONDS
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_seconds = drain_seconds
        self.shutdown_timeout = shutdown_timeout
        self.drain_until: float | None = None
        self.failed = False

    def fail(self) -> None:
        """Stop serving because this replica cannot serve any more; `run` then returns False."""
        self.failed = True
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.drain_until is None and not self.should_exit:
            # Not recorded in uvicorn's captured signals: it would re-raise SIGTERM after shutdown, and the
            # process would die by the signal instead of exiting 0.
            self.drain_until = time.monotonic() + self.drain_seconds
            self.lifecycle.begin_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.lifecycle.begin_drain()
        abort = asyncio.get_running_loop().call_later(self.shutdown_timeout, self.lifecycle.abort_in_flight)
        try:
            await super().shutdown(sockets)
        finally:
            abort.cancel()

    def serve_until_stopped(self) -> bool:
        """Run the server; True when it stopped cleanly, False when the engine failed."""
        self.run()
        return not self.failed
