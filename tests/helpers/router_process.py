"""A real `vif-router` started by a test, as a local process: its base URL while inside, its log in `workdir`."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from helpers.processes import free_port, stop_group
from helpers.runtime_process import REPO, wait_ready


@contextlib.contextmanager
def running_router(workdir: Path, *args: str, wait_on: str = "/ready") -> Iterator[str]:
    """`vif-router --port <free> ARGS...`, once `wait_on` answers 200 (`/health` for a router that has no ready
    replica yet); stopped on the way out."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "vif-router"), "--port", str(port), *args]
    log_path = workdir / "router.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url + wait_on, 30, log_path, "vif-router", every=0.2)
        yield url
    finally:
        stop_group(proc, grace=10)
