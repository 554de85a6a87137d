"""One real `vif-runtime serve` (vLLM on the default model) for the whole test session.

If the server cannot start, every integration test fails with the tail of its log: never a silent skip.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from helpers.lora_adapter import RANK, make_adapter
from helpers.markers import mark_folder
from helpers.processes import stop_group
from helpers.runtime_process import MODEL, REPO, start_runtime
from vif.runtime.model_prep import default_model_path

__all__ = ["ADAPTER", "MODEL", "REPO", "Server"]
API_KEYS = ("integration-key-1", "integration-key-2")
ADAPTER = "smollm2-lora-test"
TOOL_CALL_PARSER = "hermes"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(__file__, items, pytest.mark.integration)


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
    runtime = start_runtime(
        logs, "--api-key", API_KEYS[0], "--api-key", API_KEYS[1], "--limit-concurrency", "64",
        "--log-format", "json", "--log-file", str(logs / "vif.log"),
    )  # fmt: skip
    try:
        yield Server(runtime.base_url, API_KEYS[1], logs / "vif.log")
    finally:
        stop_group(runtime.proc)


@pytest.fixture(scope="session")
def extras_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second runtime whose model_config.json uses the optional entries: a LoRA adapter (made with peft from
    the default model) and a tool-call parser. One engine for every test of those features."""
    folder = tmp_path_factory.mktemp("extras")
    make_adapter(default_model_path(), folder / "adapter")
    entry = {
        "model_path": str(default_model_path()),
        "max_model_len": 2048,
        "engine_args": {"dtype": "float32", "enforce_eager": True, "max_lora_rank": RANK},
        "lora_adapters": {ADAPTER: "adapter"},  # relative to the config's folder, an allowed root
        "tool_call_parser": TOOL_CALL_PARSER,
    }
    config = folder / "model_config.json"
    config.write_text(json.dumps({MODEL: entry}))
    runtime = start_runtime(folder, config=config)
    try:
        yield runtime.base_url
    finally:
        stop_group(runtime.proc)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client
