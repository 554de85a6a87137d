"""A real Redis for the tenants' tests: Debian's `redis-server` (`make test-servers` installs it), in memory only,
on a free loopback port. A test may stop it and start it again on the same port, as an outage looks to a router."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpers.processes import free_port, stop_group
from helpers.waits import wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again), empty; return once it answers PING."""
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.workdir)]  # fmt: skip
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc = self.proc
        wait_for(lambda: proc.poll() is not None or pong(self.port), "redis-server answering PING", 30, 0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, grace=5)
            self.proc = None


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        raise RuntimeError("redis-server is missing: run `make test-servers`")
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
