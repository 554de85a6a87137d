"""vLLM's own router (PyPI `vllm-router`, Rust) in front of vif's runtimes, as a user would put it there: from its
own venv under ~/.cache/vif/tools (`make test-servers`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from helpers.processes import free_port, stop_group
from helpers.runtime_process import wait_ready

VLLM_ROUTER_VERSION = "0.1.17"
VLLM_ROUTER = Path(os.environ.get("VIF_TOOLS", Path.home() / ".cache/vif/tools")) / f"vllm-router-{VLLM_ROUTER_VERSION}"


@contextlib.contextmanager
def running_vllm_router(workdir: Path, *workers: str, policy: str = "cache_aware") -> Iterator[str]:
    """`vllm-router --worker-urls WORKERS --policy POLICY` on a free port, once its /health answers; stopped on the
    way out."""
    binary = VLLM_ROUTER / "bin" / "vllm-router"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `make test-servers`")
    port = free_port()
    cmd = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--policy", policy, "--worker-urls", *workers,
           "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port())]  # its default port may be taken  # fmt: skip
    log_path = workdir / "vllm-router.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url + "/health", 60, log_path, "vllm-router", every=0.2)
        yield url
    finally:
        stop_group(proc, grace=10)
