"""The real operator as a process (`vif-operator --namespace NS`), for cluster tests and the operator benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from helpers.cluster import KUBECONFIG, wait_for
from helpers.processes import free_port


class OperatorProcess:
    """`vif-operator --namespace NS`, which a test can kill and start again."""

    def __init__(self, namespace: str, log_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.namespace = namespace
        self.log_dir = log_dir
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        port = free_port()
        cmd = [
            str(Path(sys.executable).parent / "vif-operator"),
            "--namespace",
            self.namespace,
            "--health-port",
            str(port),
        ]
        cmd += ["--runtime-image", "vif-runtime:test", "--metrics-port", "0", *self.extra_args]
        env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
        log = self.log_path().open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"vif-operator exited: {self.log()}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, "the operator's health endpoint", timeout=60)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_path(self) -> Path:
        return self.log_dir / f"operator-{id(self)}-{self.starts}.log"

    def log(self) -> str:
        return "\n".join(self.log_path().read_text(errors="replace").splitlines()[-30:])


@contextlib.contextmanager
def running_operator(namespace: str, log_dir: Path, *args: str) -> Iterator[OperatorProcess]:
    """The operator, started with `args` and healthy while inside, killed on the way out."""
    operator = OperatorProcess(namespace, log_dir, args)
    operator.start()
    try:
        yield operator
    finally:
        operator.kill()
