"""Probing back: every `interval` seconds, each endpoint that is out of routing and past its cooldown is asked
`GET /ready`; a 200 puts it back. Endpoints of a static list start out unprobed, so this is also how the router
learns that a replica has finished loading."""

from __future__ import annotations

import asyncio
import logging

import httpx

from vif.runtime.router.endpoints import Endpoint, EndpointSet

log = logging.getLogger(__name__)


class Prober:
    def __init__(
        self, endpoints: EndpointSet, client: httpx.AsyncClient, interval: float = 1.0, timeout: float = 2.0
    ) -> None:
        self.endpoints = endpoints
        self.client = client
        self.interval = interval
        self.timeout = timeout

    async def is_ready(self, endpoint: Endpoint) -> bool:
        try:
            response = await self.client.get(f"{endpoint.url}/ready", timeout=self.timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def probe_due(self) -> None:
        due = self.endpoints.due_for_probe()
        for endpoint, ready in zip(due, await asyncio.gather(*map(self.is_ready, due)), strict=True):
            if ready:
                log.info("endpoint %s is ready", endpoint.url)
                self.endpoints.restore(endpoint)

    async def run(self) -> None:
        """Probe until cancelled (the app's lifespan owns this task)."""
        while True:
            await self.probe_due()
            await asyncio.sleep(self.interval)
