"""Starts anywhere: a second runtime starts beside the session's, with no KV cache size in its environment.

Each sizes its CPU KV cache from the model and the memory free when it starts (`runtime/engine/kv_cache.py`),
so neither takes the 92% of the machine vLLM's CPU backend would reserve by itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from helpers.processes import free_port, stop_group

from .conftest import MODEL, REPO, START_TIMEOUT, Server

CHOICE = re.compile(r"CPU KV cache: (\d+\.\d+) GiB, (\d+) tokens \((.+)\); available: (.+)")


def wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the second runtime exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the second runtime was not ready after {START_TIMEOUT}s")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)


def test_a_second_runtime_starts_beside_the_first(server: Server, tmp_path: Path) -> None:
    assert CHOICE.search(server.log_file.read_text()), "the session's runtime logged no KV cache choice"
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "vif-runtime"), "serve",
        "--config", str(REPO / "runtime/conf/model_config.json"), "--model-name", MODEL, "--port", str(port),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
    log = tmp_path / "second.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base, log)
        body = {"model": MODEL, "prompt": "The capital of France is", "temperature": 0, "max_tokens": 4}
        completion = httpx.post(f"{base}/v1/completions", json=body, timeout=120)
        assert completion.status_code == 200, completion.text
        assert "Paris" in completion.json()["choices"][0]["text"]
        with server.client() as first:  # the session's runtime still answers
            assert first.get("/ready").status_code == 200
    finally:
        stop_group(proc)
    choice = CHOICE.search(log.read_text(errors="replace"))
    assert choice is not None, log.read_text(errors="replace")[-4000:]
    gib, tokens = float(choice[1]), int(choice[2])
    assert gib > 0 and tokens >= 2048  # at least one sequence of the config's max_model_len
    print(f"\nsecond runtime: {choice[0]}")
