"""The local plane's own processes, stopped and started again as a crash would: e2e/cluster/up.sh starts each one
with `setsid`, its PID in .cluster/pids/<name>.pid and its output in .cluster/logs/<name>.log. A component started
again here gets the same command line and environment, and its new PID goes into the same file, so `make
cluster-down` and up.sh's health check see it as their own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.cluster import REPO, kubectl
from helpers.waits import wait_for

CLUSTER_DIR = Path(os.environ.get("VIF_CLUSTER_DIR", REPO / ".cluster"))


@dataclass(frozen=True)
class Stopped:
    """What it takes to start a killed component again."""

    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class Component:
    name: str  # as up.sh names it: etcd, kube-apiserver, ...

    def pid(self) -> int:
        return int((CLUSTER_DIR / "pids" / f"{self.name}.pid").read_text())

    def kill(self) -> Stopped:
        """SIGKILL, as a crash or a lost node would stop it; waits until it is gone."""
        pid = self.pid()
        proc = Path(f"/proc/{pid}")
        argv = proc.joinpath("cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
        pairs = (item.split("=", 1) for item in proc.joinpath("environ").read_bytes().decode().split("\0") if item)
        stopped = Stopped(argv, dict(pair for pair in pairs if len(pair) == 2))
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _gone(proc), f"{self.name} gone", 30, 0.1)
        return stopped

    def start(self, stopped: Stopped) -> None:
        log = (CLUSTER_DIR / "logs" / f"{self.name}.log").open("ab")
        proc = subprocess.Popen(
            stopped.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=stopped.env,
            start_new_session=True,
        )  # fmt: skip
        (CLUSTER_DIR / "pids" / f"{self.name}.pid").write_text(f"{proc.pid}\n")

    @contextlib.contextmanager
    def down(self, seconds: float) -> Iterator[None]:
        """Killed for `seconds` (the body runs meanwhile), then started again; returns once the API is ready."""
        stopped = self.kill()
        until = time.monotonic() + seconds
        try:
            yield
            time.sleep(max(0.0, until - time.monotonic()))  # the fault's length, not a wait for a state
        finally:
            self.start(stopped)
            wait_for(api_ready, "the API server ready again", 120)


def _gone(proc: Path) -> bool:
    """Every thread of the process has exited, so its files (its listening sockets) are closed: its main thread is
    a zombie, or reaped. The main thread alone is not enough: it turns zombie while the others still hold the
    sockets, and a component started again then finds its port taken."""
    try:
        threads = list(proc.joinpath("task").iterdir())
        return len(threads) <= 1 and proc.joinpath("stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def api_ready() -> bool:
    return kubectl("get", "--raw", "/readyz", check=False).stdout.strip() == "ok"
