"""Runs a pod template's container as a local process: the stand-in for a kubelet on the local control plane,
whose kwok nodes run no containers. Image paths map to the checkout; the ConfigMap is written where the
volume would mount it; emptyDirs become folders of a temporary directory; the port becomes a free local one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from helpers.cluster import REPO, wait_for
from helpers.processes import free_port, stop_group

# Mounts this machine has as they are: /tmp keeps vLLM's socket paths short (a Unix socket path has at most 107
# bytes), /dev/shm is shared memory already.
SHARED_HERE = {"/tmp", "/dev/shm"}


def mounted_configmap(deployment: dict) -> str:
    """The name of the ConfigMap a Deployment's pods mount as their config (content-hashed by the operator)."""
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    return next(v["configMap"]["name"] for v in volumes if v["name"] == "config")


class PodAsProcess:
    """Runs a pod template's container here: same command, args and env, with paths and the port mapped."""

    def __init__(self, deployment: dict, configmap: dict, root: Path) -> None:
        self.pod = deployment["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]
        self.paths = {"/etc/vif": str(root / "etc-vif"), "/models": str(REPO / "models")}
        for name, mount in self.empty_dirs().items():
            if mount not in SHARED_HERE:
                (root / name).mkdir(parents=True)
                self.paths[mount] = str(root / name)
        config_dir = root / "etc-vif"
        config_dir.mkdir(parents=True)
        for key, text in configmap["data"].items():
            (config_dir / key).write_text(self.localize(text))
        self.port = free_port()
        self.log = root / "pod.log"

    def empty_dirs(self) -> dict[str, str]:
        """The container's emptyDir mounts, volume name -> mount path."""
        names = {v["name"] for v in self.pod["volumes"] if "emptyDir" in v}
        return {m["name"]: m["mountPath"] for m in self.container.get("volumeMounts", []) if m["name"] in names}

    def localize(self, text: str) -> str:
        for image_path, local in self.paths.items():
            text = text.replace(image_path, local)
        return text

    def command(self) -> list[str]:
        binary = str(Path(sys.executable).parent / self.container["command"][0])
        args = [self.localize(a) for a in self.container["args"]]
        args[args.index("--host") + 1] = "127.0.0.1"
        args[args.index("--port") + 1] = str(self.port)
        return [binary, *self.container["command"][1:], *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in self.container.get("env", []):
            assert "value" in var, f"{var['name']} comes from a Secret: not part of the default CPU model"
            env[var["name"]] = self.localize(var["value"])
        return env

    def run(self) -> subprocess.Popen[bytes]:
        out = self.log.open("wb")
        return subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
        )


@contextlib.contextmanager
def running(runner: PodAsProcess, timeout: float = 600) -> Iterator[str]:
    """Start the container's process, wait on its readiness path, yield its base URL, stop it."""
    proc = runner.run()
    base = f"http://127.0.0.1:{runner.port}"
    readiness = runner.container["readinessProbe"]["httpGet"]["path"]

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the pod's command exited {proc.returncode}: {runner.log.read_text()[-3000:]}")
        try:
            return httpx.get(base + readiness, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, f"the pod's readiness path {readiness}", timeout=timeout)
        yield base
    finally:
        stop_group(proc)
