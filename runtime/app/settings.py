"""HTTP-side settings of the runtime, as `vif-runtime serve` flags set them."""

from __future__ import annotations

from dataclasses import dataclass, field

from vif.runtime.app.response_cache import CacheSettings
from vif.runtime.shared.api_keys import MAX_BODY_BYTES
from vif.runtime.shared.live_files import DEFAULT_INTERVAL


@dataclass(frozen=True)
class ServerSettings:
    """Limits, timeouts and the lifecycle's timings. `None` limits follow the engine's capacity."""

    api_keys: tuple[str, ...] = ()  # at start-up; they and the response cache reload live (`app/live.py`)
    limit_concurrency: int | None = None  # sequences in flight; default: twice the engine's max_num_seqs
    max_sequences_per_request: int = 64  # prompts x n of one request
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout: float = 30.0  # the whole body must arrive within this, else 408
    send_timeout: float = 30.0  # a stream whose client reads nothing for this long is aborted
    max_unsent_bytes: int = 64 << 20  # answers read ahead of slow clients, all streams together
    drain_seconds: float = 5.0  # after SIGTERM: /ready 503 and the listener still open
    shutdown_timeout: float = 30.0  # then in-flight requests get this long before they are aborted
    health_interval: float = 1.0  # how often the engine's health is checked while serving
    reload_interval: float = DEFAULT_INTERVAL  # how often the live configuration's files are looked at
    metrics_port: int | None = None  # /metrics on a listener of its own (shared/metrics_listener.py); None: here
    response_cache: CacheSettings = field(default_factory=CacheSettings)  # off unless it may hold entries

    def concurrency_limit(self, max_num_seqs: int) -> int:
        return self.limit_concurrency if self.limit_concurrency is not None else 2 * max_num_seqs
