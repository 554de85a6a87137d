"""The lifecycle Kubernetes relies on: drain, abort at the shutdown deadline, engine death, SIGTERM handling."""

from __future__ import annotations

import asyncio
import signal
import time

import orjson
import uvicorn

from helpers.fake_engine import FakeEngine
from helpers.waits import eventually, wait_for
from vif.runtime.app.factory import ServerSettings
from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.app.server import GracefulServer
from vif.runtime.engine.types import EngineDeadError

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
LONG = {**CHAT, "max_tokens": 200, "ignore_eos": True}


def events(body: str) -> list[dict | str]:
    data = [line[len("data: ") :] for line in body.split("\n\n") if line.startswith("data: ")]
    return [d if d == "[DONE]" else orjson.loads(d) for d in data]


async def test_draining_is_not_ready_but_still_serves(make_client) -> None:
    lifecycle = Lifecycle()
    client = await make_client(lifecycle=lifecycle)
    lifecycle.begin_drain()
    assert (await client.get("/ready")).status_code == 503
    assert (await client.get("/health")).status_code == 200
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_the_shutdown_deadline_aborts_in_flight_requests(make_client, engine: FakeEngine) -> None:
    engine.delay = 0.01
    lifecycle = Lifecycle()
    client = await make_client(lifecycle=lifecycle)
    stream = asyncio.create_task(client.post("/v1/chat/completions", json={**LONG, "stream": True}))
    plain = asyncio.create_task(client.post("/v1/chat/completions", json=LONG))
    await eventually(lambda: len(engine.produced) == 2 and min(engine.produced.values()) >= 2, "both producing")
    lifecycle.abort_in_flight()
    streamed, answered = await stream, await plain
    *chunks, error, done = events(streamed.text)
    assert streamed.status_code == 200 and chunks and done == "[DONE]"
    assert error["error"]["code"] == "shutting_down" and error["error"]["type"] == "service_unavailable"
    assert answered.status_code == 503 and answered.json()["error"]["code"] == "shutting_down"
    assert len(engine.aborted) == 2 and lifecycle.in_flight == 0


async def test_engine_death_is_503_and_fatal(make_client, engine: FakeEngine) -> None:
    fatal: list[bool] = []
    client = await make_client(lifecycle=Lifecycle(on_fatal=lambda: fatal.append(True)))
    engine.fail_with = EngineDeadError("The engine stopped.")
    engine.fail_after_steps = 2
    r = await client.post("/v1/chat/completions", json={**LONG, "stream": True})
    *_, error, done = events(r.text)
    assert error["error"]["code"] == "engine_dead" and done == "[DONE]"
    assert fatal == [True]
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503 and r.json()["error"]["code"] == "engine_dead"
    assert (await client.get("/health")).status_code == 503


async def test_the_watchdog_notices_a_dead_engine_without_any_request(make_client, engine: FakeEngine) -> None:
    fatal: list[bool] = []
    await make_client(ServerSettings(health_interval=0.01), lifecycle=Lifecycle(on_fatal=lambda: fatal.append(True)))
    engine.healthy = False
    await eventually(lambda: fatal, "the watchdog's fatal call")
    assert fatal == [True]


def test_sigterm_drains_before_the_listener_closes() -> None:
    lifecycle = Lifecycle()
    server = GracefulServer(uvicorn.Config(app=None), lifecycle, drain_seconds=0.05, shutdown_timeout=1)
    server.handle_exit(signal.SIGTERM, None)
    assert lifecycle.draining and not server.should_exit
    assert server._captured_signals == []  # not re-raised after shutdown: the process exits 0
    signalled = time.monotonic()
    assert not asyncio.run(server.on_tick(1))
    wait_for(lambda: asyncio.run(server.on_tick(2)) and server.should_exit, "the drain's end", 10, every=0.01)
    assert time.monotonic() - signalled >= 0.05  # not before the drain window passed


def test_a_second_signal_stops_at_once() -> None:
    server = GracefulServer(uvicorn.Config(app=None), Lifecycle(), drain_seconds=60, shutdown_timeout=1)
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit


def test_engine_failure_makes_the_run_fail() -> None:
    server = GracefulServer(uvicorn.Config(app=None), Lifecycle(), drain_seconds=1, shutdown_timeout=1)
    server.fail()
    assert server.should_exit and server.failed
