"""Runs a pod template's container here: the stand-in for a kubelet on the local control plane, whose kwok nodes
run no containers. From its image when `make images` built it (PodInImage), else as a local process from the
checkout's venv (PodAsProcess: image paths map to the checkout). The ConfigMap is written where the volume would
mount it; emptyDirs become folders of a temporary directory, a PersistentVolumeClaim its bound volume's hostPath;
the port becomes a free local one."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
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
    """Runs a pod template's containers here: its init containers one after another, then its container, each with
    its command, args and env, with paths and the port mapped."""

    def __init__(
        self,
        deployment: dict,
        configmap: dict,
        root: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        claims: dict[str, Path] | None = None,
        secrets: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Listens on `host`:`port` (a free local port unless given); a PersistentVolumeClaim mounts as its folder
        in `claims` (claim name -> the bound volume's path here); a Secret's key in env comes from `secrets` (name ->
        decoded data)."""
        self.secrets = secrets or {}
        self.pod = deployment["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]
        self.init_containers = self.pod.get("initContainers", [])
        self.host = host
        self.paths = {"/etc/vif": str(root / "etc-vif"), "/models": str(REPO / "models")}
        for name, mount in self.empty_dirs().items():
            if mount not in SHARED_HERE:
                (root / name).mkdir(parents=True)
                self.paths[mount] = str(root / name)
        for mount, folder in self.claim_mounts(claims or {}).items():
            self.paths[mount] = str(folder)
        config_dir = root / "etc-vif"
        config_dir.mkdir(parents=True)
        for key, text in configmap["data"].items():
            (config_dir / key).write_text(self.localize(text))
        self.port = port or free_port()
        self.log = root / "pod.log"

    def mounts(self) -> list[dict]:
        return [m for c in (*self.init_containers, self.container) for m in c.get("volumeMounts", [])]

    def empty_dirs(self) -> dict[str, str]:
        """The containers' emptyDir mounts, volume name -> mount path."""
        names = {v["name"] for v in self.pod["volumes"] if "emptyDir" in v}
        return {m["name"]: m["mountPath"] for m in self.mounts() if m["name"] in names}

    def claim_mounts(self, claims: dict[str, Path]) -> dict[str, Path]:
        """The containers' PersistentVolumeClaim mounts, mount path -> the claim's folder here."""
        volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in self.pod["volumes"]
                   if "persistentVolumeClaim" in v}  # fmt: skip
        return {m["mountPath"]: claims[volumes[m["name"]]] for m in self.mounts() if m["name"] in volumes}

    def localize(self, text: str) -> str:
        """Each image path in `text` mapped once, where a path starts (not inside `s3://models/x`), the longest
        first (/models/cache before /models)."""
        names = "|".join(re.escape(p) for p in sorted(self.paths, key=len, reverse=True))
        pattern = re.compile(rf"""(^|["'=\s])({names})(?=/|["'\s]|$)""")
        return pattern.sub(lambda m: m[1] + self.paths[m[2]], text)

    def command(self, container: dict | None = None) -> list[str]:
        """`container`'s command line here (the pod's container, on the mapped host and port, by default)."""
        container = container or self.container
        binary = str(Path(sys.executable).parent / container["command"][0])
        args = [self.localize(a) for a in container["args"]]
        if container is self.container:
            args[args.index("--host") + 1] = self.host
            args[args.index("--port") + 1] = str(self.port)
        elif "--progress-port" in args:  # the download's progress, on the pod's address as the engine will be
            args[args.index("--progress-port") + 1] = str(self.port)
            args += ["--progress-host", self.host]
        return [binary, *container["command"][1:], *args]

    def env(self, container: dict | None = None) -> dict[str, str]:
        """The container's env over this process's; a Secret's key from `secrets` (an optional one may be absent)."""
        env = dict(os.environ)
        for var in (container or self.container).get("env", []):
            if "value" in var:
                env[var["name"]] = self.localize(var["value"])
                continue
            ref = var["valueFrom"]["secretKeyRef"]
            value = self.secrets.get(ref["name"], {}).get(ref["key"])
            assert value is not None or ref.get("optional"), f"{var['name']}: {ref} not given to the stand-in"
            if value is not None:
                env[var["name"]] = value
        return env

    def run(self) -> subprocess.Popen[bytes]:
        """One process group, as a pod's: a shell runs the init containers in turn (each with its own env), then
        `exec`s the container, so the process is the container's once it runs and a failed init ends the pod."""
        out = self.log.open("wb")
        if not self.init_containers:
            return subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
            )
        steps = [shlex.join(["env", "-i", *self.assignments(c), *self.command(c)]) for c in self.init_containers]
        main = shlex.join(["env", "-i", *self.assignments(self.container), *self.command()])
        script = "set -e\n" + "\n".join(steps) + f"\nexec {main}\n"
        return subprocess.Popen(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def assignments(self, container: dict) -> list[str]:
        return [f"{name}={value}" for name, value in self.env(container).items()]


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
