"""Processes tests start: a free port, whether a server answers, and stopping the whole process group (vLLM's engine
runs in child processes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen[bytes], grace: float = 60) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited after `grace` seconds; nothing if the group is
    gone already (a process that failed to start, stopped by `wait_ready`)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait()
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def answers(url: str) -> bool:
    """Anything answers HTTP at `url` (a server that is up, whatever the status)."""
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return False
    return True
