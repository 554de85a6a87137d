"""Router tests against real `vif-runtime` replicas (vLLM on the default model): marked `integration`.

Each module gets its own two replicas (a test may stop one), and each test its own router in front of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.markers import mark_folder
from helpers.processes import stop_group
from helpers.router_process import running_router
from helpers.runtime_process import RuntimeProcess, start_runtime


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(__file__, items, pytest.mark.integration)


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
    """`vif-router` over the replicas' static list, round robin, probing an ejected replica back every 0.5 s."""
    endpoints = (a for r in replicas for a in ("--endpoint", r.base_url))
    with running_router(
        tmp_path, "--strategy", "round-robin", "--cooldown", "1", "--probe-interval", "0.5", *endpoints
    ) as url:
        yield url
