"""The router's spans: a request continues the client's trace, and the replica gets the router's own span as its
parent in `traceparent` (docs/tracing.md)."""

from __future__ import annotations

import httpx

from helpers.spans import CLIENT_PARENT, CLIENT_TRACE, TRACEPARENT, by_name, hex_id, recorded
from tests.router.conftest import WAIT, StartReplica, serve
from vif.runtime.router.app import RouterSettings, create_app
from vif.runtime.router.endpoints import EndpointSet


async def test_the_replica_gets_the_routers_span_as_its_parent(start_replica: StartReplica) -> None:
    replica, replica_served = await start_replica("a")
    tracing, exporter = recorded()
    router = await serve(create_app(EndpointSet([replica_served.url], ready=True), RouterSettings(), None, tracing))
    try:
        async with httpx.AsyncClient(base_url=router.url, timeout=WAIT) as client:
            answer = await client.post("/v1/completions", json={"prompt": "hi"}, headers={"traceparent": TRACEPARENT})
        assert answer.status_code == 200
    finally:
        await router.stop()
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"POST /v1/completions", "route", "forward"}
    server, forward = spans["POST /v1/completions"], spans["forward"]
    assert hex_id(server.context.trace_id, 32) == CLIENT_TRACE and hex_id(server.parent.span_id, 16) == CLIENT_PARENT
    assert forward.parent.span_id == spans["route"].parent.span_id == server.context.span_id
    assert forward.attributes["vif.replica"] == replica_served.url
    (seen,) = replica.seen
    assert seen["headers"]["traceparent"] == f"00-{CLIENT_TRACE}-{hex_id(forward.context.span_id, 16)}-01"


async def test_without_tracing_the_clients_traceparent_passes_through(start_replica: StartReplica) -> None:
    replica, replica_served = await start_replica("a")
    router = await serve(create_app(EndpointSet([replica_served.url], ready=True), RouterSettings()))
    try:
        async with httpx.AsyncClient(base_url=router.url, timeout=WAIT) as client:
            await client.post("/v1/completions", json={"prompt": "hi"}, headers={"traceparent": TRACEPARENT})
    finally:
        await router.stop()
    assert replica.seen[0]["headers"]["traceparent"] == TRACEPARENT
