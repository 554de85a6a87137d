"""Settings a running process reads again when their files change: the runtime's and the router's live configuration
(docs/live-config.md).

The files are mounted ConfigMaps and Secrets, which the kubelet updates in place: it writes a new hidden folder and
swaps the `..data` symlink to it, so the file's own path never sees a write event. They are polled instead: every
`interval` seconds their content is hashed (a few small files), and a changed hash is read, checked and applied.
A version that fails its check is refused with one log line and kept out: the settings in force stay, and the
refusal is what `status()` reports until a later version applies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0  # seconds between looks: the kubelet itself takes up to a minute to update a mounted Secret


_VERSION_KEY = os.urandom(32)  # the versions `/live-config` shows say nothing of the files (an API key's hash)


def fingerprint(paths: Sequence[Path]) -> str:
    """A keyed hash of the files' contents (a missing or unreadable file counts as absent, and changes it): equal
    for equal contents within this process, and no help to anyone guessing what the files hold."""
    digest = hmac.new(_VERSION_KEY, digestmod=hashlib.sha256)
    for path in paths:
        try:
            content = path.read_bytes()
        except OSError:
            content = b"\0absent"
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Refusal:
    """A version of the files that was not applied, and why."""

    version: str
    error: str
    at: float


class LiveFiles(Generic[T]):
    """`read()` the settings from `paths` again when their content changes, and `apply` them.

    `read` runs on a worker thread (it may parse files and check a template); any exception it raises refuses the
    version (a template may fail in ways no list of exceptions foresees, and the watch must outlive them all).
    `apply` runs on the event loop, so the code that reads settings while serving never sees them half-changed."""

    def __init__(
        self,
        paths: Sequence[Path] | Callable[[], Sequence[Path]],
        read: Callable[[], T],
        apply: Callable[[T], None],
        version: str | None = None,
    ) -> None:
        """`paths`: the files to look at, or a function that lists them anew at each look (a tenants file names
        key files of its own); `version`: the fingerprint of what was read at start-up (default: the files as they
        are now)."""
        self.paths = paths if callable(paths) else lambda: tuple(paths)
        self.read = read
        self.apply = apply
        self.version = version or fingerprint(self.paths())
        self.applied_at = time.time()
        self.refused: Refusal | None = None
        self.counts = {"applied": 0, "refused": 0}

    async def run(self, interval: float = DEFAULT_INTERVAL) -> None:
        """Look every `interval` seconds, for as long as the process serves."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except Exception:  # never end the watch: a key revoked later must still be taken
                log.exception("live configuration: looking at its files failed; looking again in %ss", interval)

    async def poll(self) -> str | None:
        """Look once: `applied`, `refused`, or None when nothing changed (or the change was refused before)."""
        seen = await asyncio.to_thread(lambda: fingerprint(self.paths()))
        if seen == self.version:
            self.refused = None  # the files went back to the version in force
            return None
        if self.refused is not None and self.refused.version == seen:
            return None
        try:
            settings = await asyncio.to_thread(self.read)
        except Exception as exc:
            self.refused = Refusal(seen, str(exc) or type(exc).__name__, time.time())
            self.counts["refused"] += 1
            log.error("live configuration %s refused, %s stays in force: %s", seen, self.version, exc)
            return "refused"
        self.apply(settings)
        log.info("live configuration %s applied (was %s)", seen, self.version)
        self.version, self.applied_at, self.refused = seen, time.time(), None
        self.counts["applied"] += 1
        return "applied"

    def status(self) -> dict[str, Any]:
        """What `GET /live-config` answers: the version in force and the last refusal since, if any."""
        refused = None if self.refused is None else asdict(self.refused)
        return {"version": self.version, "appliedAt": self.applied_at, "refused": refused}
