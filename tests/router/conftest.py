"""Fixtures for the router's tests: fake replicas and the router itself, each a real uvicorn server in this
test's event loop, on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from vif.runtime.router.app import Router, RouterSettings, create_app
from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.shared.routes import PROTOCOL_PATHS

WAIT = 5.0  # seconds any condition a test waits for may take before the test fails


class InProcessServer(uvicorn.Server):
    """uvicorn without its signal handlers (several run at once in the test's loop), stopping as soon as asked
    rather than at its next tenth-of-a-second tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)
        await self.stop_requested.wait()


def listening_socket(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    server: InProcessServer
    task: asyncio.Task[None]
    url: str

    async def stop(self) -> None:
        self.server.should_exit = True
        self.server.stop_requested.set()
        async with asyncio.timeout(WAIT):
            await self.task


async def serve(app: Any, port: int = 0) -> Served:
    sock = listening_socket(port)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    server = InProcessServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_until(lambda: server.started or task.done())
    if task.done():
        task.result()
    return Served(server, task, f"http://127.0.0.1:{sock.getsockname()[1]}")


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll `condition` until it holds; fail the test past `timeout`."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@dataclass(eq=False)
class FakeReplica:
    """A replica that records what it was sent and answers with its name. A streaming request's events come
    from `events` (the test feeds them; None ends the stream, BREAK breaks it), else three fixed events. With
    `dead_engine` it answers every request as the runtime does once its engine died: 503 `engine_dead`."""

    name: str
    ready: bool = True
    dead_engine: bool = False
    probes: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    events: asyncio.Queue[bytes | None] | None = None
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)

    BREAK = b"BREAK"

    def app(self) -> Starlette:
        paths = [*PROTOCOL_PATHS, "/tokenize", "/detokenize"]
        return Starlette(
            routes=[
                Route("/ready", self.readiness, methods=["GET"]),
                Route("/v1/models", self.answer, methods=["GET"]),
                *(Route(path, self.answer, methods=["POST"]) for path in paths),
            ]
        )

    async def readiness(self, request: Request) -> Response:
        self.probes += 1
        return JSONResponse({"ready": self.ready}, 200 if self.ready else 503)

    async def answer(self, request: Request) -> Response:
        body = await request.body()
        self.seen.append(
            {"path": request.url.path, "query": request.url.query, "headers": request.headers, "body": body}
        )
        if self.dead_engine:
            error = {"message": "The engine stopped.", "type": "service_unavailable", "code": "engine_dead"}
            return JSONResponse({"error": error}, 503, headers={"x-replica": self.name})
        if body and orjson.loads(body).get("stream"):
            return StreamingResponse(self.stream(), media_type="text/event-stream", headers={"x-replica": self.name})
        return JSONResponse({"replica": self.name}, headers={"x-replica": self.name})

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            if self.events is None:
                for i in range(3):
                    yield f"data: {self.name} {i}\n\n".encode()
                return
            while (event := await self.events.get()) is not None:
                if event == self.BREAK:
                    raise RuntimeError("the replica died mid-stream")
                yield event
        finally:
            self.stream_closed.set()


StartReplica = Callable[..., Awaitable[tuple[FakeReplica, Served]]]
StartRouter = Callable[..., Awaitable[tuple[str, Router]]]


@pytest_asyncio.fixture(loop_scope="function")  # the test's own loop: the servers run in it
async def start_replica() -> AsyncIterator[StartReplica]:
    started: list[Served] = []

    async def start(name: str, port: int = 0, **kwargs: Any) -> tuple[FakeReplica, Served]:
        replica = FakeReplica(name, **kwargs)
        served = await serve(replica.app(), port)
        started.append(served)
        return replica, served

    yield start
    await asyncio.gather(*(served.stop() for served in started))


@pytest_asyncio.fixture(loop_scope="function")  # the test's own loop: the servers run in it
async def start_router() -> AsyncIterator[StartRouter]:
    """`url, router = await start_router([replica urls], ready=True, strategy=...)`; `ready=False` leaves the
    endpoints to the prober."""
    started: list[Served] = []

    async def start(urls: list[str], ready: bool = True, **settings: Any) -> tuple[str, Router]:
        defaults: dict[str, Any] = {"probe_interval": 0.02, "cooldown": 0.1, "model_name": "m"}
        app = create_app(EndpointSet(urls, ready=ready), RouterSettings(**(defaults | settings)))
        served = await serve(app)
        started.append(served)
        return served.url, app.state.router

    yield start
    await asyncio.gather(*(served.stop() for served in started))
