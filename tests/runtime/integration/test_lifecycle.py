"""The lifecycle on the real engine: SIGTERM drains and exits 0; a dead engine core means 503 and exit 1.

Each test starts its own runtime (it ends it), and signals the main process only, as Kubernetes signals PID 1.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil

from helpers.exposition import metric
from helpers.processes import stop_group
from helpers.runtime_process import start_runtime
from helpers.waits import wait_for

STREAM = {"prompt": "Count slowly:", "max_tokens": 120, "ignore_eos": True, "stream": True}


def test_sigterm_during_a_stream_finishes_it_and_exits_0(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, "--drain-seconds", "10", "--shutdown-timeout", "120")
    lines: list[str] = []
    try:
        with (
            httpx.Client(base_url=runtime.base_url, timeout=120) as client,
            httpx.Client(base_url=runtime.base_url, timeout=30) as probe,
            client.stream("POST", "/v1/completions", json=STREAM) as r,
        ):
            # The probe's connection is opened before the signal: on a loaded CI machine a new one made after it
            # once missed the drain window and met a closed listener.
            assert probe.get("/ready").status_code == 200
            stream = r.iter_lines()
            lines.append(next(line for line in stream if line.startswith("data: ")))
            os.kill(runtime.proc.pid, signal.SIGTERM)
            assert probe.get("/ready").status_code == 503  # at once, while requests are still served
            lines += [line for line in stream if line.startswith("data: ")]
        assert runtime.proc.wait(timeout=60) == 0, runtime.tail()
    finally:
        if runtime.proc.poll() is None:
            stop_group(runtime.proc)
    assert lines[-1] == "data: [DONE]"
    assert '"finish_reason":"length"' in lines[-2], lines[-3:]


def running(base_url: str) -> float:
    """vLLM's count of the engine's running requests."""
    return metric(httpx.get(f"{base_url}/metrics").text, "vllm:num_requests_running")


def test_a_dead_engine_core_means_503_and_a_prompt_exit(tmp_path: Path) -> None:
    """A whole answer in flight gets 503 `engine_dead`; a stream that had started ends with that error as its
    last event before `[DONE]` (its 200 went out long before); then the process exits non-zero for its pod to be restarted."""
    runtime = start_runtime(tmp_path)
    try:
        core = next(p for p in psutil.Process(runtime.proc.pid).children(recursive=True) if "EngineCore" in p.name())
        answers: list[httpx.Response] = []
        streamed: list[bytes] = []
        body = {"prompt": "Count slowly:", "max_tokens": 1000, "ignore_eos": True}

        def stream() -> None:
            with httpx.stream("POST", f"{runtime.base_url}/v1/completions", json={**body, "stream": True},
                              timeout=120) as response:  # fmt: skip
                streamed.extend(response.iter_raw())

        in_flight = [
            threading.Thread(
                target=lambda: answers.append(httpx.post(f"{runtime.base_url}/v1/completions", json=body, timeout=120))
            ),
            threading.Thread(target=stream),
        ]
        for thread in in_flight:
            thread.start()
        wait_for(lambda: running(runtime.base_url) >= 2 and streamed, "both requests running, the stream started", 30,
                 every=0.1)  # fmt: skip
        core.kill()
        for thread in in_flight:
            thread.join(60)
        assert answers and answers[0].status_code == 503, answers and answers[0].text
        assert answers[0].json()["error"]["code"] == "engine_dead"
        events = [e for e in b"".join(streamed).split(b"\n\n") if e.strip()]
        assert events[-1] == b"data: [DONE]", events[-3:]
        assert b'"code":"engine_dead"' in events[-2].replace(b" ", b""), events[-3:]
        started = time.monotonic()
        assert runtime.proc.wait(timeout=60) != 0, runtime.tail()
        print(f"\nexited {time.monotonic() - started:.1f} s after the in-flight request's 503")
    finally:
        if runtime.proc.poll() is None:
            stop_group(runtime.proc)
