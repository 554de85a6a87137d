"""The concurrency limit, counted in engine sequences (prompts x n), not in HTTP requests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vif.runtime.protocols.errors import APIError


class SequenceLimiter:
    """At most `limit` sequences in flight; past it 429 with Retry-After at once, never a queue.

    One request may ask for at most `per_request` sequences (400 otherwise), so one client cannot take the
    whole limit with a single request. The slot is taken after the body is parsed, so a client trickling its
    body holds nothing.
    """

    def __init__(self, limit: int, per_request: int, retry_after_seconds: int = 1) -> None:
        self.max_per_request = per_request
        self.retry_after = str(retry_after_seconds)
        self.active = 0  # one event loop: the check and the increment below cannot interleave
        self.resize(limit)

    def resize(self, limit: int) -> None:
        """Set the limit (once the engine's capacity is known)."""
        self.limit = limit
        self.per_request = min(self.max_per_request, limit)

    @contextmanager
    def slot(self, sequences: int) -> Iterator[None]:
        if sequences > self.per_request:
            raise APIError(
                f"The request asks for {sequences} sequences (prompts x n); at most {self.per_request} are "
                "allowed per request.",
                param="n",
                code="too_many_sequences",
            )
        if self.active + sequences > self.limit:
            raise APIError(
                f"The server is running its limit of {self.limit} concurrent sequences; retry later.",
                status=429,
                type="rate_limit_error",
                code="too_many_requests",
                headers={"Retry-After": self.retry_after},
            )
        self.active += sequences
        try:
            yield
        finally:
            self.active -= sequences
