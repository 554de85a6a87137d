"""Slow clients against the runtime and against the router in front of it: 200 connections that send their body
at 10 bytes/s and 200 that read their stream at 10 bytes/s, while a prober asks /health and a client sends small
chat requests one after another. The process's memory and open files are sampled throughout.

The slow readers' own requests fill the runtime's sequence slots while the engine computes their answers, and
the limiter answers 429 at once past its slots, by design. What is measured is what comes after: once the engine
is idle, a slow reader holds nothing the others need, so every small chat from then on must be answered. Before
the slot was handed back at the engine's end (`vif.runtime.app.limiter.Slot`), they were refused until the 30 s
send timeout aborted the slow streams.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from helpers.exposition import metric
from helpers.processes import stop_group
from helpers.router_process import running_router
from helpers.runtime_process import MODEL, RuntimeProcess, start_runtime
from helpers.waits import eventually

from .conftest import Row

SLOW = 200  # connections of each kind
RATE = 10  # bytes a second, each way
WINDOW = 45.0  # seconds the slow clients stay: past the 30 s body timeout of both processes
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 300}], "max_tokens": 4}).encode()
STREAM = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Count to a hundred."}], "max_tokens": 32,
     "ignore_eos": True, "stream": True, "logprobs": True, "top_logprobs": 20}
).encode()  # fmt: skip
# 32 tokens with 20 alternatives each: about 64 KB of events, more than the sockets' buffers take, for little work of
# the engine's: the reader's stream outlasts the engine's work by far.


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    started = start_runtime(tmp_path_factory.mktemp("runtime"), "--max-num-seqs", "8")
    yield started
    stop_group(started.proc)


def request(path: str, host: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def slow_body(host: str, port: int, until: float) -> str:
    """Sends its headers, then its body at RATE bytes a second; what the server answered, if it did."""
    reader, writer = await asyncio.open_connection(host, port)
    whole = request("/v1/chat/completions", f"{host}:{port}", BODY)
    head_end = whole.index(b"\r\n\r\n") + 4
    writer.write(whole[:head_end])
    sent = head_end
    try:
        while time.monotonic() < until and sent < len(whole):
            writer.write(whole[sent : sent + RATE])
            sent += RATE
            try:
                answer = await asyncio.wait_for(reader.read(64), 1.0)
            except TimeoutError:
                continue
            return answer.split(b"\r\n", 1)[0].decode() if answer else "closed"
        return "still sending"
    except ConnectionError:
        return "closed"
    finally:
        writer.close()


async def slow_reader(host: str, port: int, until: float) -> str:
    """Asks for a stream, then reads it at RATE bytes a second through a small receive buffer; its status line."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request("/v1/chat/completions", f"{host}:{port}", STREAM))
    status = ""
    try:
        while time.monotonic() < until:
            chunk = await reader.read(RATE)
            if not chunk:
                return status or "closed"
            status = status or chunk.split(b"\r\n", 1)[0].decode()
            await asyncio.sleep(1)
        return status
    except ConnectionError:
        return status or "closed"
    finally:
        writer.close()


def listening_pid(port: int) -> int:
    return next(c.pid for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN" and c.pid)


def sample(proc: psutil.Process) -> tuple[int, int]:
    return proc.memory_info().rss, proc.num_fds()


async def engine_load(runtime: httpx.AsyncClient) -> float:
    text = (await runtime.get("/metrics")).text
    return metric(text, "vllm:num_requests_running") + metric(text, "vllm:num_requests_waiting")


async def idle_after_busy(runtime_url: str, started: float) -> float:
    """Seconds from `started` until the engine, having been busy, has nothing running or waiting."""
    busy = False
    async with httpx.AsyncClient(base_url=runtime_url, timeout=10) as runtime:
        while True:
            load = await engine_load(runtime)
            if busy and not load:
                return time.monotonic() - started
            busy = busy or load > 0
            await asyncio.sleep(0.1)


async def under_slow_clients(url: str, pid: int, runtime_url: str) -> tuple[Row, dict[str, object]]:
    split = urlsplit(url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    proc = psutil.Process(pid)
    rss0, fds0 = sample(proc)
    started = time.monotonic()
    until = started + WINDOW
    peak = [rss0, fds0]
    health: list[float] = []
    saturated: list[int | str] = []  # what the chats got while the engine computed the slow readers' answers
    answers: list[int | str] = []  # and once it was idle
    idle = asyncio.create_task(idle_after_busy(runtime_url, started))

    async def watch() -> None:
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            while time.monotonic() < until:
                rss, fds = sample(proc)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], fds)
                was_idle = idle.done()
                began = time.monotonic()
                try:
                    probe = (await client.get("/health")).status_code
                except httpx.HTTPError as exc:
                    probe = type(exc).__name__
                health.append(time.monotonic() - began if probe == 200 else float("inf"))
                try:
                    answer: int | str = (await client.post("/v1/chat/completions", json=chat)).status_code
                except httpx.HTTPError as exc:
                    answer = type(exc).__name__
                (answers if was_idle else saturated).append(answer)
                await asyncio.sleep(0.5)

    slow = [slow_body(host, port, until) for _ in range(SLOW)] + [slow_reader(host, port, until) for _ in range(SLOW)]
    outcomes, _ = await asyncio.gather(asyncio.gather(*slow), watch())
    idle_after = idle.result() if idle.done() else None
    idle.cancel()
    closed_at = time.monotonic()
    await eventually(lambda: sample(proc)[1] <= fds0 + 10, "the slow clients' files closed", 120, every=0.5)
    settled = time.monotonic() - closed_at
    rss1, _ = sample(proc)
    failed = [code for code in answers if code != 200]
    print("while saturated", saturated, "after", answers, "health", [round(h, 2) for h in health])
    seen = {
        "bodies": sorted(set(outcomes[:SLOW])), "readers": sorted(set(outcomes[SLOW:])),
        "health median ms": round(statistics.median(health) * 1000), "health max ms": round(max(health) * 1000),
        "peak rss MiB": round((peak[0] - rss0) / 2**20), "peak fds": peak[1] - fds0,
        "rss after MiB": round((rss1 - rss0) / 2**20), "engine idle after s": idle_after,
        "refused while saturated": sum(1 for code in saturated if code != 200), "sent while saturated": len(saturated),
    }  # fmt: skip
    left = f"RSS +{seen['peak rss MiB']} MiB at peak, +{seen['rss after MiB']} after; files +{seen['peak fds']} at peak"
    row = Row("", settled, left, len(answers), len(failed), len(failed))
    return row, seen


@pytest.mark.parametrize("target", ["runtime", "router"])
async def test_slow_clients_hold_no_one_else_up(
    runtime: RuntimeProcess, tmp_path: Path, table: list[Row], target: str
) -> None:
    if target == "runtime":
        row, seen = await under_slow_clients(runtime.base_url, runtime.proc.pid, runtime.base_url)
    else:
        with running_router(tmp_path, "--endpoint", runtime.base_url) as router:
            pid = listening_pid(int(router.rsplit(":", 1)[1]))
            row, seen = await under_slow_clients(router, pid, runtime.base_url)
    assert seen["engine idle after s"] is not None, f"the engine was still busy at the end: {seen}"
    health = f"/health median {seen['health median ms']} ms, max {seen['health max ms']} ms"
    busy = f"engine busy with their answers {seen['engine idle after s']:.0f} s"
    fault = (
        f"{SLOW} bodies and {SLOW} stream reads at {RATE} B/s against the {target} ({health}; {busy}; counted after)"
    )
    table.append(Row(fault, row.recovered_s, row.left_behind, row.sent, row.failed, row.failed_before_streaming))
    print(target, seen)
    assert row.sent and not row.failed, seen
