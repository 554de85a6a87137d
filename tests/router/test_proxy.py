"""The router in front of fake replicas, all real HTTP servers in this loop: pass-through, retries, ejection,
probing back, holding and metrics (a replica failing mid-response: test_replica_failures.py)."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from helpers.fake_engine import FakeEngine
from tests.router.conftest import (
    WAIT,
    StartReplica,
    StartRouter,
    closed_port,
    wait_until,
)
from vif.runtime.app.factory import create_app as create_runtime_app
from vif.runtime.router.app import create_app
from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.serving.registry import serving_classes
from vif.runtime.shared.routes import PROTOCOL_PATHS

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hello"}]}


async def test_response_and_headers_pass_through(start_replica: StartReplica, start_router: StartRouter) -> None:
    replica, served = await start_replica("a")
    url, _ = await start_router([served.url])
    headers = {"Authorization": "Bearer k1", "X-Request-Id": "req-42"}
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        response = await client.post("/v1/chat/completions?trace=1", json=CHAT, headers=headers)
    assert response.status_code == 200 and response.json() == {"replica": "a"}
    assert response.headers["x-replica"] == "a" and response.headers["content-type"] == "application/json"
    sent = replica.seen[0]
    assert sent["headers"]["authorization"] == "Bearer k1" and sent["headers"]["x-request-id"] == "req-42"
    assert (sent["path"], sent["query"], orjson.loads(sent["body"])) == ("/v1/chat/completions", "trace=1", CHAT)


async def test_the_replica_gets_the_clients_headers_and_no_others(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    """Byte for byte (a UTF-8 value too), and nothing the router's HTTP client would add on its own (a Content-Type
    for a body sent without one, Accept-Encoding, User-Agent)."""
    replica, served = await start_replica("a")
    url, _ = await start_router([served.url])
    title = (b"x-title", "café".encode())
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        response = await client.post("/v1/completions", content=b'{"prompt": "x"}', headers=[title])
    assert response.status_code == 200
    per_connection = {b"host", b"content-length", b"connection"}
    sent = {k.lower() for k, _ in response.request.headers.raw} - per_connection
    assert "content-type" not in response.request.headers  # the client sent none
    seen = replica.seen[0]["headers"].raw
    assert title in seen
    assert {k.lower() for k, _ in seen} - per_connection == sent


async def test_every_forwarded_route_reaches_the_replica(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    replica, served = await start_replica("a")
    url, _ = await start_router([served.url])
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        assert (await client.get("/v1/models")).status_code == 200
        for path in [*PROTOCOL_PATHS, "/tokenize", "/detokenize"]:
            assert (await client.post(path, json={"prompt": "x"})).status_code == 200, path
    assert [s["path"] for s in replica.seen] == ["/v1/models", *PROTOCOL_PATHS, "/tokenize", "/detokenize"]


async def test_stream_passes_through_byte_for_byte_as_sent(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    """The replica sends the next event only after the client has received the previous one: a router that
    buffered would never deliver the first, and the test would fail on its bounded wait."""
    replica, served = await start_replica("a", events=asyncio.Queue())
    assert replica.events is not None
    url, _ = await start_router([served.url])
    sent = [b'data: {"n": 1}\n\n', b'data: {"n": 2, "text": "\\u00e9\xc3\xa9"}\n\n', b"data: [DONE]\n\n"]
    received = expected = b""
    chat = {**CHAT, "stream": True}
    async with (
        httpx.AsyncClient(base_url=url, timeout=WAIT) as client,
        client.stream("POST", "/v1/chat/completions", json=chat) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.aiter_raw()
        for event in sent:
            replica.events.put_nowait(event)
            expected += event
            async with asyncio.timeout(WAIT):
                while len(received) < len(expected):
                    received += await anext(chunks)
            assert received == expected
        replica.events.put_nowait(None)
        async with asyncio.timeout(WAIT):
            received += b"".join([chunk async for chunk in chunks])
    assert received == b"".join(sent)


async def test_refused_connection_is_retried_on_another_replica(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    replica, served = await start_replica("live")
    dead = f"http://127.0.0.1:{closed_port()}"
    url, router = await start_router([dead, served.url], strategy="round-robin", cooldown=60)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        for _ in range(2):  # round robin sends one of the two to the dead replica
            response = await client.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 200 and response.json() == {"replica": "live"}
        metrics = (await client.get("/metrics")).text
    assert len(replica.seen) == 2
    assert 'vif_router_retries_total{reason="connect"} 1.0' in metrics
    assert f'vif_router_ejections_total{{endpoint="{dead}",reason="connect"}} 1.0' in metrics
    assert f'vif_router_endpoint_ready{{endpoint="{dead}"}} 0.0' in metrics
    endpoint = router.endpoints.get(dead)
    assert endpoint is not None and not endpoint.ready


async def test_every_attempt_refused_is_a_502(start_router: StartRouter) -> None:
    dead = [f"http://127.0.0.1:{closed_port()}" for _ in range(2)]
    url, _ = await start_router(dead, retries=1, cooldown=60, max_wait=0)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "replica_unreachable"


async def test_a_503_is_retried_on_another_replica(start_replica: StartReplica, start_router: StartRouter) -> None:
    """A replica whose engine died answers 503 before anything reached the client: the request goes elsewhere."""
    dead, dead_served = await start_replica("dead", dead_engine=True)
    live, live_served = await start_replica("live")
    url, _ = await start_router([dead_served.url, live_served.url], strategy="round-robin", cooldown=60)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        answers = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(2)]
        metrics = (await client.get("/metrics")).text
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"replica": "live"})] * 2
    assert (len(dead.seen), len(live.seen)) == (1, 2)
    assert 'vif_router_retries_total{reason="unavailable"} 1.0' in metrics
    assert f'vif_router_ejections_total{{endpoint="{dead_served.url}",reason="unavailable"}} 1.0' in metrics


async def test_the_last_replicas_503_reaches_the_client(start_replica: StartReplica, start_router: StartRouter) -> None:
    replicas = [await start_replica(name, dead_engine=True) for name in ("a", "b")]
    url, _ = await start_router([served.url for _, served in replicas], retries=1, cooldown=60, max_wait=0)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503 and response.json()["error"]["code"] == "engine_dead"
    assert [len(replica.seen) for replica, _ in replicas] == [1, 1]


async def test_client_leaving_closes_the_replica_stream(start_replica: StartReplica, start_router: StartRouter) -> None:
    """The router closes its upstream response when the client goes, so the runtime aborts the engine request."""
    replica, served = await start_replica("a", events=asyncio.Queue())
    assert replica.events is not None
    url, router = await start_router([served.url])
    replica.events.put_nowait(b"data: 1\n\n")
    chat = {**CHAT, "stream": True}
    async with (
        httpx.AsyncClient(base_url=url, timeout=WAIT) as client,
        client.stream("POST", "/v1/chat/completions", json=chat) as response,
    ):
        async with asyncio.timeout(WAIT):
            await anext(response.aiter_raw())
    async with asyncio.timeout(WAIT):
        await replica.stream_closed.wait()
    await wait_until(lambda: router.endpoints.members[0].in_flight == 0)


async def test_ejected_replica_is_probed_back(start_replica: StartReplica, start_router: StartRouter) -> None:
    port = closed_port()
    dead = f"http://127.0.0.1:{port}"
    _, served = await start_replica("live")
    url, router = await start_router([dead, served.url], strategy="round-robin", cooldown=0.1)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        for _ in range(2):
            assert (await client.post("/v1/completions", json={"prompt": "x"})).status_code == 200
        endpoint = router.endpoints.get(dead)
        assert endpoint is not None and not endpoint.ready
        revived, _ = await start_replica("revived", port=port, ready=False)
        await wait_until(lambda: revived.probes >= 2)  # probed after the cooldown: alive but not ready, so still out
        assert not endpoint.ready
        revived.ready = True
        await wait_until(lambda: endpoint.ready)
        answers = {(await client.post("/v1/completions", json={"prompt": "x"})).json()["replica"] for _ in range(2)}
    assert answers == {"live", "revived"}


async def test_static_endpoints_are_probed_before_use(start_replica: StartReplica, start_router: StartRouter) -> None:
    _, served = await start_replica("a")
    url, router = await start_router([served.url], ready=False)
    await wait_until(router.endpoints.any_ready)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        assert (await client.get("/ready")).status_code == 200
        assert (await client.get("/health")).status_code == 200


async def test_requests_are_held_until_a_replica_is_ready(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    replica, served = await start_replica("a", ready=False)
    url, router = await start_router([served.url], ready=False, max_wait=WAIT)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT * 2) as client:
        assert (await client.get("/ready")).status_code == 503
        held = asyncio.ensure_future(client.post("/v1/chat/completions", json=CHAT))
        await wait_until(lambda: router.holding.pending == 1)
        assert 'vif_router_pending_requests{model="m"} 1.0' in (await client.get("/metrics")).text
        replica.ready = True
        response = await held
    assert response.status_code == 200 and response.json() == {"replica": "a"}
    assert router.holding.pending == 0


async def test_held_too_long_is_503_with_retry_after(start_replica: StartReplica, start_router: StartRouter) -> None:
    _, served = await start_replica("a", ready=False)
    url, _ = await start_router([served.url], ready=False, max_wait=0.2)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json() == {
        "error": {
            "message": "No replica became ready within 0.2 seconds.", "type": "service_unavailable", "param": None,
            "code": "no_ready_replica",
        }
    }  # fmt: skip


async def test_same_prefix_lands_on_the_same_replica(start_replica: StartReplica, start_router: StartRouter) -> None:
    served = [(await start_replica(name))[1] for name in "abc"]
    url, _ = await start_router([s.url for s in served], strategy="prefix-hash")
    system = {"role": "system", "content": "You are a careful assistant. " * 20}
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        answers = set()
        for i in range(6):
            body = {"model": "m", "messages": [system, {"role": "user", "content": f"question {i}"}]}
            answers.add((await client.post("/v1/chat/completions", json=body)).json()["replica"])
        metrics = (await client.get("/metrics")).text
    assert len(answers) == 1
    assert 'vif_router_routing_decisions_total{outcome="first",strategy="prefix-hash"} 6.0' in metrics


async def test_metrics_are_exposed(start_replica: StartReplica, start_router: StartRouter) -> None:
    _, served = await start_replica("a")
    url, _ = await start_router([served.url], strategy="least-load")
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        await client.post("/v1/chat/completions", json=CHAT)
        metrics = (await client.get("/metrics")).text
    for line in [
        'vif_router_pending_requests{model="m"} 0.0',
        f'vif_router_endpoint_in_flight{{endpoint="{served.url}"}} 0.0',
        f'vif_router_endpoint_ready{{endpoint="{served.url}"}} 1.0',
        'vif_router_routing_decisions_total{outcome="chosen",strategy="least-load"} 1.0',
        'vif_router_requests_total{model="m",status="200"} 1.0',
        "# TYPE vif_router_retries_total counter",
        "# TYPE vif_router_ejections_total counter",
    ]:
        assert line in metrics


async def test_body_over_the_limit_is_413(start_replica: StartReplica, start_router: StartRouter) -> None:
    replica, served = await start_replica("a")
    url, _ = await start_router([served.url], max_body_bytes=100)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        response = await client.post("/v1/completions", json={"prompt": "x" * 200})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    assert replica.seen == []


def test_the_router_forwards_every_path_the_runtime_serves() -> None:
    """Read from both apps' routes, so a path the runtime adds (an alias: `/chat/completions`) cannot be a 404 at
    the router; the router answers its own probes and metrics."""

    def served(app: Starlette) -> set[tuple[str, str]]:
        return {(r.path, m) for r in app.routes if isinstance(r, Route) for m in r.methods or () if m != "HEAD"}

    classes = serving_classes("OpenAIServingChat")
    runtime = create_runtime_app(ServedModel("m"), FakeEngine, classes, RuntimeMetrics("m", CollectorRegistry()))
    own = {"/health", "/ready", "/metrics", "/openapi.json"}
    forwarded = {(path, method) for path, method in served(runtime) if path not in own}
    assert ("/chat/completions", "POST") in forwarded
    assert forwarded <= served(create_app(EndpointSet(["http://127.0.0.1:1"])))
