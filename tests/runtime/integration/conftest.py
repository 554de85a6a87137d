"""One real `vif-runtime serve` (vLLM on the default model) for the whole test session.

If the server cannot start, every integration test fails with the tail of its log: never a silent skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from helpers.processes import free_port, stop_group

REPO = Path(__file__).resolve().parents[3]
MODEL = "smollm2-135m-instruct"
API_KEYS = ("integration-key-1", "integration-key-2")
START_TIMEOUT = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Server:
    base_url: str
    api_key: str
    log_file: Path

    def client(self, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=120, **kwargs)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("server")
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "vif-runtime"), "serve",
        "--config", str(REPO / "runtime/conf/model_config.json"), "--model-name", MODEL,
        "--port", str(port), "--api-key", API_KEYS[0], "--api-key", API_KEYS[1],
        "--limit-concurrency", "64", "--log-format", "json", "--log-file", str(logs / "vif.log"),
    ]  # fmt: skip
    env = dict(os.environ)  # no VLLM_CPU_KVCACHE_SPACE needed: the runtime sizes the CPU KV cache itself
    console = (logs / "console.log").open("w")
    proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vif-runtime exited with {proc.returncode}:\n{_tail(logs / 'console.log')}")
            if time.monotonic() > deadline:
                pytest.fail(f"vif-runtime was not ready after {START_TIMEOUT}s:\n{_tail(logs / 'console.log')}")
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        yield Server(base, API_KEYS[1], logs / "vif.log")
    finally:
        stop_group(proc)
        console.close()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client
