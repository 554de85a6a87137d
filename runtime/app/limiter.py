"""The concurrency limit, counted in engine sequences (prompts x n), not in HTTP requests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vif.runtime.app.settings import ServerSettings
from vif.runtime.protocols.errors import APIError


class SequenceLimiter:
    """At most `limit` sequences in flight; past it 429 with Retry-After at once, never a queue.

    One request may ask for at most `per_request` sequences (400 otherwise), so one client cannot take the
    whole limit with a single request. The slot is taken after the body is parsed, so a client trickling its
    body holds nothing. A request whose engine work is over hands its slot back before its answer is sent
    (`Slot.hand_back`), so a client reading slowly holds no engine capacity, only its unsent answer; answers are
    read ahead of their clients only while all the unsent bytes fit `max_unsent_bytes`.
    """

    def __init__(
        self,
        limit: int,
        per_request: int,
        max_unsent_bytes: int = ServerSettings.max_unsent_bytes,
        retry_after_seconds: int = 1,
    ) -> None:
        self.max_per_request = per_request
        self.max_unsent_bytes = max_unsent_bytes
        self.retry_after = str(retry_after_seconds)
        self.active = 0  # one event loop: the check and the increment below cannot interleave
        self.unsent = 0  # bytes of answers read from the engine and not yet written to their clients
        self.resize(limit)

    def resize(self, limit: int) -> None:
        """Set the limit (once the engine's capacity is known)."""
        self.limit = limit
        self.per_request = min(self.max_per_request, limit)

    @contextmanager
    def slot(self, sequences: int) -> Iterator[Slot]:
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
        slot = Slot(self, sequences)
        try:
            yield slot
        finally:
            slot.close()


class Slot:
    """One request's sequences, held until the engine is done with it (`hand_back`) or the request ends, and the
    bytes of its answer read from the engine but not yet written to the client (counted in the limiter's
    `unsent`, whose budget bounds how far every answer is read ahead of its client)."""

    def __init__(self, limiter: SequenceLimiter, sequences: int) -> None:
        self.limiter = limiter
        self.sequences = sequences
        self.unsent = 0
        limiter.active += sequences

    @property
    def may_read_ahead(self) -> bool:
        """Whether more of the answer may be read from the engine now: always once the client has taken all that
        was read, else only while every answer's unsent bytes fit the budget. Past the budget a stream goes at its
        client's pace, and holds its slot until the engine is done with it."""
        return not self.unsent or self.limiter.unsent <= self.limiter.max_unsent_bytes

    def queued(self, size: int) -> None:
        """`size` bytes of the answer are waiting for the client."""
        self.unsent += size
        self.limiter.unsent += size

    def sent(self, size: int) -> None:
        """`size` bytes of the answer were written to the client."""
        size = min(size, self.unsent)
        self.unsent -= size
        self.limiter.unsent -= size

    def hand_back(self) -> None:
        """The engine is done with the request: its sequences are free for others while the answer is sent."""
        self.limiter.active -= self.sequences
        self.sequences = 0

    def close(self) -> None:
        self.hand_back()
        self.sent(self.unsent)
