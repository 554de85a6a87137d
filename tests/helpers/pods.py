"""Runs a pod template's container here: the stand-in for a kubelet on the local control plane, whose kwok nodes
run no containers. From its image when `make images` built it (PodInImage), else as a local process from the
checkout's venv (PodAsProcess: image paths map to the checkout). ConfigMap and Secret volumes are written where they
would mount, as the kubelet writes them (`write_volume`), and can be written again while the pod runs; emptyDirs
become folders of a temporary directory, a PersistentVolumeClaim its bound volume's hostPath; the port becomes a free
local one."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from helpers.cluster import REPO, get, wait_for
from helpers.images import Container, Mount
from helpers.processes import free_port, stop_group

# Mounts this machine has as they are: /tmp keeps vLLM's socket paths short (a Unix socket path has at most 107
# bytes), /dev/shm is shared memory already.
SHARED_HERE = {"/tmp", "/dev/shm"}


def mounted_configmap(deployment: dict) -> str:
    """The name of the ConfigMap a Deployment's pods mount as their config (content-hashed by the operator)."""
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    return next(v["configMap"]["name"] for v in volumes if v["name"] == "config")


VolumeFiles = dict[str, dict[str, str]]  # volume name -> file name -> content


def volume_files(deployment: dict, read: Callable[[str, str], dict | None]) -> VolumeFiles:
    """Each ConfigMap and Secret volume of a Deployment's pods -> its files as the kubelet writes them: every key,
    or the `items` under their paths; a Secret's values decoded. `read(kind, name)`: the object as the API
    answers it, None if there is none (that volume is left out: a kubelet keeps what it last wrote)."""
    files = {}
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        # A projected volume is its sources' files side by side; the Secrets' names are `name` there.
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        found = [_source_files(source, read) for source in sources if "configMap" in source or "secret" in source]
        if found and all(f is not None for f in found):
            files[volume["name"]] = {path: text for f in found if f is not None for path, text in f.items()}
    return files


def _source_files(source: dict, read: Callable[[str, str], dict | None]) -> dict[str, str] | None:
    if "configMap" in source:
        kind, ref = "ConfigMap", source["configMap"]
    else:
        kind, ref = "Secret", source["secret"]
    found = read(kind, ref.get("secretName") or ref["name"])
    if found is None:
        return None
    data = dict(found.get("data") or {})
    if kind == "Secret":
        data = {key: base64.b64decode(value).decode() for key, value in data.items()}
    items = ref.get("items")
    return {i["path"]: data[i["key"]] for i in items if i["key"] in data} if items else data


def cluster_volume_files(deployment: dict, namespace: str) -> VolumeFiles:
    """`volume_files` of a Deployment on the local plane, read with kubectl."""
    return volume_files(deployment, lambda kind, name: get(kind.lower(), name, namespace))


def write_volume(folder: Path, files: dict[str, str]) -> None:
    """Write a ConfigMap's or Secret's files as the kubelet's atomic writer does: into a new hidden folder, then
    `..data` swapped to it in one rename, each file a symlink through `..data`. A reader never sees half a version,
    and the files' own paths never change."""
    folder.mkdir(parents=True, exist_ok=True)
    version = folder / f"..{time.time_ns()}"
    version.mkdir()
    for name, text in files.items():
        (version / name).parent.mkdir(parents=True, exist_ok=True)  # a projected volume's `keys/search`
        (version / name).write_text(text)
    swap = folder / "..data_tmp"
    swap.unlink(missing_ok=True)
    swap.symlink_to(version.name)
    old = (folder / "..data").resolve() if (folder / "..data").is_symlink() else None
    os.replace(swap, folder / "..data")
    tops = {name.split("/")[0] for name in files}
    for name in tops:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")
    for gone in {p.name for p in folder.iterdir() if not p.name.startswith("..")} - tops:
        (folder / gone).unlink()
    if old is not None:
        shutil.rmtree(old)


class PodAsProcess:
    """Runs a pod template's containers here: its init containers one after another, then its container, each with
    its command, args and env, with paths and the port mapped."""

    def __init__(
        self,
        deployment: dict,
        volumes: VolumeFiles,
        root: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        claims: dict[str, Path] | None = None,
        secrets: dict[str, dict[str, str]] | None = None,
        metrics_port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`volumes`: the files of its ConfigMap and Secret volumes (`volume_files`). Listens on `host`:`port` (a
        free local port unless given), and serves /metrics on `host`:`metrics_port` (the same); a PersistentVolumeClaim mounts as its folder in `claims` (claim name -> the
        bound volume's path here); a Secret's key in env comes from `secrets` (name -> decoded data); `env` is what
        the node adds under the containers' own (a ServiceAccount's credentials)."""
        self.secrets = secrets or {}
        self.node_env = env or {}
        self.pod = deployment["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]
        self.init_containers = self.pod.get("initContainers", [])
        self.host = host
        self.root = root
        self.paths = {"/models": str(REPO / "models")}
        for name, mount in self.empty_dirs().items():
            if mount not in SHARED_HERE:
                (root / name).mkdir(parents=True)
                self.paths[mount] = str(root / name)
        for mount, folder in self.claim_mounts(claims or {}).items():
            self.paths[mount] = str(folder)
        self.projected = {m["name"]: m["mountPath"] for m in self.mounts() if m["name"] in volumes}
        for name, mount in self.projected.items():
            self.paths[mount] = str(root / "volumes" / name)
        self.volumes: VolumeFiles = {}
        self.write_volumes({name: volumes.get(name, {}) for name in self.projected})  # a missing object: empty
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.log = root / "pod.log"

    def write_volumes(self, volumes: VolumeFiles) -> list[str]:
        """Write the ConfigMap and Secret volumes of `volumes` whose files changed (paths in them mapped here); their
        names. A volume left out of `volumes` keeps what it has."""
        changed = [name for name in self.projected if name in volumes and volumes[name] != self.volumes.get(name)]
        for name in changed:
            write_volume(
                self.root / "volumes" / name, {key: self.localize(text) for key, text in volumes[name].items()}
            )
            self.volumes[name] = volumes[name]
        return changed

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
            if "--metrics-port" in args:
                args[args.index("--metrics-port") + 1] = str(self.metrics_port)
        elif "--progress-port" in args:  # the download's progress, on the pod's address as the engine will be
            args[args.index("--progress-port") + 1] = str(self.port)
            args += ["--progress-host", self.host]
        return [binary, *container["command"][1:], *args]

    def env(self, container: dict | None = None) -> dict[str, str]:
        """The container's env over this process's; a Secret's key from `secrets` (an optional one may be absent)."""
        env = {**os.environ, **self.node_env}
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
        if not self.init_containers:
            return self._container("wb")
        out = self.log.open("wb")
        steps = [shlex.join(["env", "-i", *self.assignments(c), *self.command(c)]) for c in self.init_containers]
        main = shlex.join(["env", "-i", *self.assignments(self.container), *self.command()])
        script = "set -e\n" + "\n".join(steps) + f"\nexec {main}\n"
        return subprocess.Popen(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def restart(self) -> subprocess.Popen[bytes]:
        """The container started again after it exited, as a kubelet does under `restartPolicy: Always`: the
        container alone (init containers ran once, for the pod), its output added to the same log."""
        return self._container("ab")

    def _container(self, log_mode: str) -> subprocess.Popen[bytes]:
        """The container alone, as its own process group, its output in the log opened with `log_mode`."""
        out = self.log.open(log_mode)
        return subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
        )

    def assignments(self, container: dict) -> list[str]:
        return [f"{name}={value}" for name, value in self.env(container).items()]


def pod_user(pod: dict) -> str:
    """`uid:gid` from the pod's securityContext, the container's own taking precedence."""
    context = {**pod.get("securityContext", {}), **pod["containers"][0].get("securityContext", {})}
    return f"{context['runAsUser']}:{context['runAsGroup']}"


def pod_mounts(pod: dict, root: Path, files: VolumeFiles) -> tuple[Mount, ...]:
    """The container's volumeMounts as folders of `root`: ConfigMaps and Secrets written out (`files`, by volume),
    emptyDirs writable by anyone (the kubelet's mode for them)."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = []
    for mount in pod["containers"][0].get("volumeMounts", []):
        volume, host = volumes[mount["name"]], root / "volumes" / mount["name"]
        if "configMap" in volume or "secret" in volume or "projected" in volume:
            write_volume(host, files.get(mount["name"], {}))
        else:
            assert "emptyDir" in volume, (
                f"volume {mount['name']}: only ConfigMaps, Secrets, projections and emptyDirs mount here"
            )
            host.mkdir(parents=True)
            host.chmod(0o777)
        mounts.append(Mount(host, mount["mountPath"], mount.get("readOnly", False)))
    return tuple(mounts)


class PodInImage:
    """Runs a pod template's container from its image (`make images`): the command, args, env, user and mounts the
    operator wrote, on the host's network, with the ports mapped to free local ones."""

    def __init__(self, deployment: dict, volumes: VolumeFiles, root: Path, image: Container) -> None:
        self.pod = deployment["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]
        self.image = image
        self.mounts = pod_mounts(self.pod, root, volumes)
        self.port = free_port()
        self.metrics_port = free_port()
        self.log = root / "pod.log"

    def run(self) -> subprocess.Popen[bytes]:
        args = list(self.container["args"])
        args[args.index("--host") + 1] = "127.0.0.1"  # the host's network: listen on loopback only
        args[args.index("--port") + 1] = str(self.port)
        if "--metrics-port" in args:
            args[args.index("--metrics-port") + 1] = str(self.metrics_port)
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
