"""Starts anywhere: a second runtime starts beside the session's, with no KV cache size in its environment.

Each sizes its CPU KV cache from the model and the memory free when it starts (`runtime/engine/kv_cache.py`),
so neither takes the 92% of the machine vLLM's CPU backend would reserve by itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx

from helpers.processes import stop_group
from helpers.runtime_process import start_runtime

from .conftest import MODEL, Server

CHOICE = re.compile(r"CPU KV cache: (\d+\.\d+) GiB, (\d+) tokens \((.+)\); available: (.+)")


def test_a_second_runtime_starts_beside_the_first(server: Server, tmp_path: Path) -> None:
    assert CHOICE.search(server.log_file.read_text()), "the session's runtime logged no KV cache choice"
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
    second = start_runtime(tmp_path, env=env)
    base, proc, log = second.base_url, second.proc, second.console
    try:
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
