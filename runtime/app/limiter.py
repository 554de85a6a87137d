"""The concurrency limit, counted in engine sequences (prompts x n), not in HTTP requests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vif.runtime.protocols.errors import APIError


class SequenceLimiter:
    """At most `limit` sequences in flight; past it 429 with Retry-After at once, never a queue.

    One request may ask for at most `per_request` sequences (400 otherwise), so one client cannot take the
    whole limit with a single request. The slot is taken after the body is parsed, so a client trickling its
    body holds nothing. A request whose engine work is over hands its slot back before its answer is sent
    (`Slot.hand_back`), so a client reading slowly holds no engine capacity, only its unsent answer, and those
    answers together are bounded by `max_unsent_bytes`.
    """

    def __init__(
        self, limit: int, per_request: int, max_unsent_bytes: int = 64 << 20, retry_after_seconds: int = 1
    ) -> None:
        self.max_per_request = per_request
        self.max_unsent_bytes = max_unsent_bytes
        self.retry_after = str(retry_after_seconds)
        self.active = 0  # one event loop: the check and the increment below cannot interleave
        self.unsent = 0  # bytes of answers whose slots were handed back, not yet written to their clients
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
    """One request's sequences, held from the engine's start to the last byte sent, or handed back earlier."""

    def __init__(self, limiter: SequenceLimiter, sequences: int) -> None:
        self.limiter = limiter
        self.sequences = sequences
        self.unsent: int | None = None  # counted in the limiter's `unsent` once handed back
        limiter.active += sequences

    def hand_back(self, unsent: int) -> bool:
        """The engine is done and `unsent` bytes of the answer are left to write: give the sequences back if the
        limiter's budget for unsent answers has room for them. Otherwise the slot is kept until `close`, as a
        request still at work (so many slow readers at once meet the 429 again, not an unbounded buffer)."""
        if self.unsent is not None or self.limiter.unsent + unsent > self.limiter.max_unsent_bytes:
            return False
        self.unsent = unsent
        self.limiter.unsent += unsent
        self.limiter.active -= self.sequences
        return True

    def sent(self, size: int) -> None:
        """`size` bytes of the answer were written to the client."""
        if self.unsent is not None:
            size = min(size, self.unsent)
            self.unsent -= size
            self.limiter.unsent -= size

    def close(self) -> None:
        if self.unsent is None:
            self.limiter.active -= self.sequences
        else:
            self.limiter.unsent -= self.unsent
        self.unsent = 0
        self.sequences = 0
