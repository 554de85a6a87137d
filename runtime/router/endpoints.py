"""The replicas a router can send to: their URLs, requests in flight, and whether each is ready.

The set's members come from outside (the static `--endpoint` list today, a watch of the Service's EndpointSlices
later: both call `replace`); readiness is the router's own view on top. A member that fails a request is ejected
for `cooldown` seconds and then probed (`probes.py`) until its `GET /ready` answers 200.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit


def normalize_url(url: str) -> str:
    """`http://host:port` without a trailing slash; anything but an http(s) URL with a host is refused."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"an endpoint URL has no query or fragment: {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


@dataclass(eq=False)
class Endpoint:
    """One replica. `in_flight` counts this router's requests to it, from the upstream request to the last byte."""

    url: str
    ready: bool = False
    in_flight: int = 0
    probe_after: float = 0.0  # monotonic time before which a not-ready endpoint is not probed


class EndpointSet:
    """The members, in URL order, and a wake-up for whoever waits for one to become ready (`holding.py`).

    Not thread-safe: everything, a discovery watch included, changes it from the router's event loop.
    """

    def __init__(self, urls: Iterable[str] = (), *, ready: bool = False, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._members: dict[str, Endpoint] = {}
        self._changed = asyncio.Event()
        self.replace(urls, ready=ready)

    @property
    def members(self) -> list[Endpoint]:
        return list(self._members.values())

    def ready(self) -> list[Endpoint]:
        return [e for e in self._members.values() if e.ready]

    def any_ready(self) -> bool:
        return any(e.ready for e in self._members.values())

    def get(self, url: str) -> Endpoint | None:
        return self._members.get(normalize_url(url))

    def replace(self, urls: Iterable[str], *, ready: bool = False) -> None:
        """Make the members exactly `urls`. Members that stay keep their state; new ones start `ready` (a
        discovery watch knows they are; a static list does not, so they are probed first). A removed endpoint's
        requests in flight finish: they hold the `Endpoint` itself."""
        wanted = sorted({normalize_url(u) for u in urls})
        if wanted != list(self._members):
            self._members = {url: self._members.get(url) or Endpoint(url, ready=ready) for url in wanted}
            self._notify()

    def eject(self, endpoint: Endpoint, cooldown: float) -> bool:
        """Stop routing to `endpoint` for `cooldown` seconds, then probe it. False if it was already out."""
        endpoint.probe_after = max(endpoint.probe_after, self._clock() + cooldown)
        if not endpoint.ready:
            return False
        endpoint.ready = False
        self._notify()
        return True

    def restore(self, endpoint: Endpoint) -> None:
        """A probe found `endpoint` ready: route to it again (if it is still a member)."""
        if not endpoint.ready and self._members.get(endpoint.url) is endpoint:
            endpoint.ready = True
            self._notify()

    def due_for_probe(self) -> list[Endpoint]:
        now = self._clock()
        return [e for e in self._members.values() if not e.ready and e.probe_after <= now]

    def postpone_probe(self, endpoint: Endpoint, seconds: float) -> None:
        endpoint.probe_after = self._clock() + seconds

    async def changed(self) -> None:
        """Return at the next change of membership or readiness."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
