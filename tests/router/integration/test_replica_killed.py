"""Two real replicas behind the real `vif-router`; one is SIGKILLed during a load run of streamed and whole
requests. Only a stream that had already started may fail: everything else is retried on the survivor."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from helpers.processes import free_port, stop_group
from helpers.runtime_process import MODEL, RuntimeProcess, start_runtime, wait_ready

REPO = Path(__file__).resolve().parents[3]
WORKERS = 4
BEFORE_KILL = 6.0  # seconds of load with both replicas
AFTER_KILL = 6.0


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RuntimeProcess]]:
    """Both started at once, one core each, so the pair is ready in the time of one."""

    def start(core: int) -> RuntimeProcess:
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": str(core % (os.cpu_count() or 1))}
        return start_runtime(tmp_path_factory.mktemp(f"replica{core}"), "--max-num-seqs", "8", env=env)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(start, core) for core in (0, 1)]
        started = [f.result() for f in futures]
    yield started
    for replica in started:
        if replica.proc.poll() is None:
            stop_group(replica.proc, grace=30)


@pytest.fixture
def router(replicas: list[RuntimeProcess], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "vif-router"), "--port", str(port), "--strategy", "round-robin",
        "--cooldown", "1", "--probe-interval", "0.5", *(a for r in replicas for a in ("--endpoint", r.base_url)),
    ]  # fmt: skip
    log = (tmp_path / "router.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, f"{url}/ready", 20, tmp_path / "router.log", "vif-router", every=0.2)
        yield url
    finally:
        stop_group(proc, grace=10)
        log.close()


@dataclass
class Outcome:
    stream: bool
    started: bool  # a stream that had its 200 status line: once that went out, the router never retries
    ok: bool
    detail: str = ""
    finished: float = 0.0


async def one_request(client: httpx.AsyncClient, stream: bool, i: int) -> Outcome:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Count to ten, take {i}."}], "max_tokens": 24}
    started = False
    try:
        if not stream:
            response = await client.post("/v1/chat/completions", json=body)
            ok = response.status_code == 200 and bool(response.json()["choices"])
            return Outcome(False, False, ok, response.text[:200], time.monotonic())
        async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
            started = response.status_code == 200
            text = (await response.aread()).decode()
            ok = started and text.rstrip().endswith("data: [DONE]")
            return Outcome(True, started, ok, text[-200:], time.monotonic())
    except httpx.HTTPError as exc:
        return Outcome(stream, started, False, repr(exc), time.monotonic())


async def load(url: str, until: float) -> list[Outcome]:
    outcomes: list[Outcome] = []

    async def worker(w: int) -> None:
        i = 0
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while time.monotonic() < until:
                outcomes.append(await one_request(client, stream=(w + i) % 2 == 0, i=i))
                i += 1

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    return outcomes


async def test_killing_a_replica_fails_only_streams_already_started(
    replicas: list[RuntimeProcess], router: str
) -> None:
    victim = replicas[0]
    start = time.monotonic()
    run = asyncio.ensure_future(load(router, until=start + BEFORE_KILL + AFTER_KILL))
    await asyncio.sleep(BEFORE_KILL)
    os.killpg(victim.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    outcomes = await run
    victim.proc.wait(timeout=30)

    failed = [o for o in outcomes if not o.ok]
    assert [o for o in failed if not (o.stream and o.started)] == [], failed
    assert len(outcomes) >= 2 * WORKERS and sum(o.ok for o in outcomes) >= len(outcomes) - WORKERS
    assert sum(o.ok and o.finished > killed_at + 1 for o in outcomes) >= WORKERS  # the survivor took the load
    metrics = httpx.get(f"{router}/metrics", timeout=5).text
    assert f'vif_router_endpoint_ready{{endpoint="{victim.base_url}"}} 0.0' in metrics
    assert f'vif_router_endpoint_ready{{endpoint="{replicas[1].base_url}"}} 1.0' in metrics
    assert 'vif_router_ejections_total{endpoint="' + victim.base_url in metrics
