"""A real `vif-runtime serve` on the default model, started by a test: its process, address and log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "smollm2-135m-instruct"
START_TIMEOUT = 600


@dataclass
class RuntimeProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    console: Path

    def tail(self, lines: int = 40) -> str:
        return _tail(self.console, lines)


def start_runtime(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    config: Path = REPO / "runtime/conf/model_config.json",
    model: tuple[str, ...] | None = None,
    port: int | None = None,
) -> RuntimeProcess:
    """Start the server in its own process group (vLLM's engine core is a child process) and wait until it is
    ready; if it exits or is not ready in time, the test fails with the tail of its console. It serves `model`
    (`MODEL [--served-model-name NAME]`) if given, else `config`'s entry for the default model, on `port` (default:
    a free one)."""
    from helpers.processes import free_port

    port = port or free_port()
    chosen = model or ("--config", str(config), "--model-name", MODEL)
    cmd = [str(Path(sys.executable).parent / "vif-runtime"), "serve", *chosen, "--port", str(port), *args]
    console = workdir / "console.log"
    with console.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ), start_new_session=True, cwd=REPO
        )
    runtime = RuntimeProcess(proc, f"http://127.0.0.1:{port}", console)
    wait_ready(proc, f"{runtime.base_url}/ready", START_TIMEOUT, console, "vif-runtime")
    return runtime


def wait_ready(
    proc: subprocess.Popen[bytes], url: str, timeout: float, console: Path, name: str, every: float = 1.0
) -> None:
    """Until `url` answers 200. If the process exits or time runs out, it is stopped and the test fails with
    the tail of its console."""
    from helpers.processes import stop_group

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode}:\n{_tail(console)}")
        if time.monotonic() > deadline:
            stop_group(proc)
            pytest.fail(f"{name} was not ready after {timeout:g}s:\n{_tail(console)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(every)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
