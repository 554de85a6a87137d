"""Runs a pod template's container here: the stand-in for a kubelet on the local control plane, whose kwok nodes
run no containers. From its image when `make images` built it (PodInImage), else as a local process from the
checkout's venv (PodAsProcess: image paths map to the checkout). The ConfigMap is written where the volume would
mount it; emptyDirs become folders of a temporary directory; the port becomes a free local one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from helpers.cluster import REPO, wait_for
from helpers.images import Container, Mount
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

    def __init__(
        self, deployment: dict, configmap: dict, root: Path, host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        """Listens on `host`:`port` (a free local port unless given)."""
        self.pod = deployment["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]
        self.host = host
        self.paths = {"/etc/vif": str(root / "etc-vif"), "/models": str(REPO / "models")}
        for name, mount in self.empty_dirs().items():
            if mount not in SHARED_HERE:
                (root / name).mkdir(parents=True)
                self.paths[mount] = str(root / name)
        config_dir = root / "etc-vif"
        config_dir.mkdir(parents=True)
        for key, text in configmap["data"].items():
            (config_dir / key).write_text(self.localize(text))
        self.port = port or free_port()
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
        args[args.index("--host") + 1] = self.host
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


def pod_user(pod: dict) -> str:
    """`uid:gid` from the pod's securityContext, the container's own taking precedence."""
    context = {**pod.get("securityContext", {}), **pod["containers"][0].get("securityContext", {})}
    return f"{context['runAsUser']}:{context['runAsGroup']}"


def pod_mounts(pod: dict, root: Path, configmaps: dict[str, dict]) -> tuple[Mount, ...]:
    """The container's volumeMounts as folders of `root`: ConfigMaps written out, emptyDirs writable by anyone (the
    kubelet's mode for them)."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = []
    for mount in pod["containers"][0].get("volumeMounts", []):
        volume, host = volumes[mount["name"]], root / "volumes" / mount["name"]
        host.mkdir(parents=True)
        if "configMap" in volume:
            for key, text in configmaps[volume["configMap"]["name"]]["data"].items():
                (host / key).write_text(text)
        else:
            assert "emptyDir" in volume, f"volume {mount['name']}: only ConfigMaps and emptyDirs mount here"
            host.chmod(0o777)
        mounts.append(Mount(host, mount["mountPath"], mount.get("readOnly", False)))
    return tuple(mounts)


class PodInImage:
    """Runs a pod template's container from its image (`make images`): the command, args, env, user and mounts the
    operator wrote, on the host's network, with the port mapped to a free local one."""

    def __init__(self, deployment: dict, configmap: dict, root: Path, image: Container) -> None:
        self.pod = deployment["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]
        self.image = image
        self.mounts = pod_mounts(self.pod, root, {configmap["metadata"]["name"]: configmap})
        self.port = free_port()
        self.log = root / "pod.log"

    def run(self) -> subprocess.Popen[bytes]:
        args = list(self.container["args"])
        args[args.index("--host") + 1] = "127.0.0.1"  # the host's network: listen on loopback only
        args[args.index("--port") + 1] = str(self.port)
        env = {}
        for var in self.container.get("env", []):
            assert "value" in var, f"{var['name']} comes from a Secret: not part of the default CPU model"
            env[var["name"]] = var["value"]
        argv = [*self.container["command"], *args]
        command = self.image.command(argv, user=pod_user(self.pod), env=env, mounts=self.mounts)
        out = self.log.open("wb")
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def running(runner: PodAsProcess | PodInImage, timeout: float = 600) -> Iterator[str]:
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
