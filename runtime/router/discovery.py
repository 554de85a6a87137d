"""Replicas from a Service's EndpointSlices: the ready, non-terminating addresses, kept current by a watch.

The router lists the Service's slices (`kubernetes.io/service-name=NAME`), only those the EndpointSlice
controller manages (anyone who may create a slice could otherwise add an address and receive clients' prompts and
keys), then watches them from that resourceVersion; every change replaces the endpoint set with what the slices
now say. A watch that expires (410) or breaks is followed by a fresh list after a short, growing pause. The
Kubernetes client is used only to read the credentials (in-cluster or a kubeconfig); the list and watch are plain
HTTP on httpx, like the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from vif.runtime.router.endpoints import EndpointSet

log = logging.getLogger(__name__)

SERVICE_LABEL = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"
MAX_PAUSE_SECONDS = 30.0


@dataclass(frozen=True)
class ApiAccess:
    """Where the API server is and how to authenticate to it. The headers are read anew for every list and
    watch: a pod's ServiceAccount token is rotated on disk, and the client's refresh hook rereads it."""

    server: str
    verify: ssl.SSLContext | bool
    configuration: Any  # kubernetes.client.Configuration

    def headers(self) -> dict[str, str]:
        cfg = self.configuration
        if cfg.refresh_api_key_hook is not None:
            cfg.refresh_api_key_hook(cfg)
        settings = cfg.auth_settings().values()
        return {s["key"]: s["value"] for s in settings if s.get("in") == "header" and s.get("value")}


def api_access(kubeconfig: str | None = None) -> ApiAccess:
    """In a pod, its ServiceAccount; elsewhere `kubeconfig` (or $KUBECONFIG, or ~/.kube/config)."""
    from kubernetes import client, config  # only discovery needs it, and it takes a moment to import

    cfg = client.Configuration()
    if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    verify: ssl.SSLContext | bool = cfg.verify_ssl
    if cfg.verify_ssl:
        verify = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file:
            verify.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ApiAccess(cfg.host.rstrip("/"), verify, cfg)


def endpoint_urls(slices: Iterable[Mapping[str, Any]], port_name: str | None) -> list[str]:
    """The base URL of every ready, non-terminating endpoint of the slices (pure).

    The port is the slice's port named `port_name`, or its only port when no name is given.
    """
    urls = set()
    for s in slices:
        if s.get("addressType") not in ("IPv4", "IPv6"):
            continue
        ports = [p for p in s.get("ports") or [] if port_name is None or p.get("name") == port_name]
        if len(ports) != 1 or ports[0].get("port") is None:
            continue
        port = ports[0]["port"]
        for endpoint in s.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            # An unset `ready` means ready (the API's own reading); a terminating endpoint takes no new work.
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            for address in endpoint.get("addresses") or []:
                host = f"[{address}]" if s["addressType"] == "IPv6" else address
                urls.add(f"http://{host}:{port}")
    return sorted(urls)


class EndpointSliceWatch:
    """Keeps an `EndpointSet` equal to a Service's ready endpoints."""

    def __init__(
        self, access: ApiAccess, namespace: str, service: str, port_name: str | None, endpoints: EndpointSet
    ) -> None:
        self.endpoints = endpoints
        self.port_name = port_name
        self.path = f"{access.server}/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        self.selector = f"{SERVICE_LABEL}={service},{MANAGED_BY}"
        self.access = access
        self.client = httpx.AsyncClient(verify=access.verify, timeout=httpx.Timeout(10, read=None), trust_env=False)
        self.slices: dict[str, dict[str, Any]] = {}

    async def run(self) -> None:
        """List and watch until cancelled."""
        pause = 0.5
        try:
            while True:
                try:
                    version = await self._list()
                    pause = 0.5
                    await self._watch(version)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    log.warning("watching %s failed (%s); listing again in %.1fs", self.selector, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
        finally:
            await self.client.aclose()

    async def _list(self) -> str:
        response = await self.client.get(
            self.path, params={"labelSelector": self.selector}, headers=self.access.headers()
        )
        response.raise_for_status()
        listed = response.json()
        self.slices = {s["metadata"]["name"]: s for s in listed.get("items") or []}
        self._apply()
        return str(listed["metadata"]["resourceVersion"])

    async def _watch(self, version: str) -> None:
        params = {"labelSelector": self.selector, "watch": "true", "resourceVersion": version}
        params["allowWatchBookmarks"] = "true"
        async with self.client.stream("GET", self.path, params=params, headers=self.access.headers()) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = orjson.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":  # typically 410 Gone: the version is too old; list again
                    raise ValueError(f"watch error: {obj.get('message', obj)}")
                if kind == "BOOKMARK":
                    continue
                name = obj["metadata"]["name"]
                if kind == "DELETED":
                    self.slices.pop(name, None)
                else:
                    self.slices[name] = obj
                self._apply()

    def _apply(self) -> None:
        urls = endpoint_urls(self.slices.values(), self.port_name)
        before = {e.url for e in self.endpoints.ready()}
        self.endpoints.replace(urls, ready=True)
        if set(urls) != before:
            log.info("endpoints of %s: %s", self.selector, ", ".join(urls) or "none ready")
