"""A stand-in kubelet for the local plane, whose kwok nodes run no containers: every pod of a label selector that has
an IP gets its init containers and its container run here (`PodAsProcess`) listening on that IP and the container's
port; its ConfigMap and Secret volumes are written again when those change, as a kubelet updates them; and a pod
that is being deleted, or is gone, gets SIGTERM on its main process and then its grace period, as a kubelet does.
A pod's credentials for the API (its ServiceAccount's token, on a real node) are the plane's kubeconfig here: the
router's pods watch their replicas' EndpointSlices with it.

kwok gives pods addresses from 198.18.0.0/15 (RFC 2544's benchmarking range, which no LAN or VPN uses);
`routed_pod_ips` makes that whole range local to this machine (a local route on loopback, root only), so a process
can bind a pod's IP and a router reach it at its EndpointSlice address.
kwok still marks a pod Ready at once, before its engine has loaded: the router's probes and holding cover that gap,
where a real kubelet's readiness probe would.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from helpers.cluster import KUBECONFIG
from helpers.operator_process import running_operator
from helpers.pods import PodAsProcess, VolumeFiles, volume_files
from helpers.processes import stop_group

POD_CIDR = "198.18.0.0/15"  # e2e/cluster/up.sh: kwok --cidr


@contextmanager
def routed_pod_ips() -> Iterator[None]:
    """While inside, every address of the pod range is this machine's own."""
    route = ["local", POD_CIDR, "dev", "lo", "table", "local"]
    subprocess.run(["ip", "route", "replace", *route], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "route", "del", *route], check=False, capture_output=True)


@dataclass
class Container:
    name: str
    ip: str
    proc: subprocess.Popen[bytes]
    runner: PodAsProcess
    grace: float
    stopping: bool = False
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.runner.port}"

    def answers_ready(self) -> bool:
        """Its runtime says it is ready (kwok marks the pod Ready long before)."""
        try:
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False


class StandInKubelet:
    """Runs the pods of `selector` in `namespace` while inside a `with`; `containers` are those started so far."""

    def __init__(
        self,
        namespace: str,
        selector: str,
        root: Path,
        every: float = 0.5,
        volumes_every: float = 2.0,
        restart: bool = False,
    ) -> None:
        """Looks at the pods every `every` seconds, and at their ConfigMaps and Secrets every `volumes_every` (a real
        kubelet: about a minute). With `restart`, a container that exits while its pod lives is started again at
        the next look (`restartPolicy: Always`, without a kubelet's back-off); without, it stays as it ended, for a
        test that looks at how it ended."""
        config = k8s_client.Configuration()
        k8s_config.load_kube_config(str(KUBECONFIG), client_configuration=config)
        self.core = k8s_client.CoreV1Api(k8s_client.ApiClient(config))
        self.namespace, self.selector, self.root, self.every = namespace, selector, root, every
        self.volumes_every, self.restart = volumes_every, restart
        self._volumes_seen = 0.0
        self.containers: dict[str, Container] = {}  # by pod UID
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> StandInKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for container in self.containers.values():
            if container.proc.poll() is None:
                stop_group(container.proc, grace=30)

    def running(self) -> list[Container]:
        """Containers whose pod still exists and is not being deleted."""
        return [c for c in self.containers.values() if not c.stopping and c.proc.poll() is None]

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sync()
            except Exception as exc:  # kept for the test to report; the loop goes on
                self.error = exc

    def sync(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).to_dict()["items"]
        live = {p["metadata"]["uid"]: p for p in pods if not p["metadata"].get("deletion_timestamp")}
        for uid, container in self.containers.items():
            if uid not in live and not container.stopping:
                container.stopping = True
                os.kill(container.proc.pid, signal.SIGTERM)  # PID 1 of the container
                threading.Thread(target=self._kill_after, args=(container.proc, container.grace), daemon=True).start()
        for uid, pod in live.items():
            ip = (pod.get("status") or {}).get("pod_ip")
            if uid not in self.containers and ip:
                self.containers[uid] = self._start(pod, ip)
            elif self.restart and uid in self.containers and self.containers[uid].proc.poll() is not None:
                container = self.containers[uid]
                container.proc, container.restarts = container.runner.restart(), container.restarts + 1
        if time.monotonic() - self._volumes_seen > self.volumes_every:
            self._volumes_seen = time.monotonic()
            for container in self.running():
                container.runner.write_volumes(self._volume_files(container.runner.pod))

    def _start(self, pod: dict[str, Any], ip: str) -> Container:
        raw = self.core.api_client.sanitize_for_serialization(
            self.core.read_namespaced_pod(pod["metadata"]["name"], self.namespace)
        )  # the API's own field names, as PodAsProcess reads a Deployment's template
        template = {"spec": {"template": {"spec": raw["spec"]}}}
        ports = {p.get("name"): p["containerPort"] for p in raw["spec"]["containers"][0]["ports"]}
        runner = PodAsProcess(template, self._volume_files(raw["spec"]), self.root / raw["metadata"]["name"], host=ip,
                              port=next(iter(ports.values())), claims=self._claims(raw["spec"]),
                              secrets=self._secrets(raw["spec"]), metrics_port=ports.get("metrics"),
                              env={"KUBECONFIG": str(KUBECONFIG)})  # fmt: skip
        grace = float(raw["spec"].get("terminationGracePeriodSeconds") or 30)
        return Container(raw["metadata"]["name"], ip, runner.run(), runner, grace)

    def _volume_files(self, pod_spec: dict[str, Any]) -> VolumeFiles:
        def read(kind: str, name: str) -> dict[str, Any] | None:
            get = self.core.read_namespaced_config_map if kind == "ConfigMap" else self.core.read_namespaced_secret
            try:
                return self.core.api_client.sanitize_for_serialization(get(name, self.namespace))
            except k8s_client.ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        return volume_files({"spec": {"template": {"spec": pod_spec}}}, read)

    def _secrets(self, pod_spec: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Each Secret the containers' env names -> its data, decoded, as a kubelet hands it to the container."""
        containers = [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
        refs = [v["valueFrom"]["secretKeyRef"] for c in containers for v in c.get("env", []) if "valueFrom" in v]
        read = self.core.read_namespaced_secret
        return {
            name: {k: base64.b64decode(v).decode() for k, v in (read(name, self.namespace).data or {}).items()}
            for name in {r["name"] for r in refs}
        }

    def _claims(self, pod_spec: dict[str, Any]) -> dict[str, Path]:
        """Each PersistentVolumeClaim of the pod -> the hostPath of the volume bound to it (the scheduler places
        a pod only once its claims are bound), as a kubelet mounts it."""
        claims = {}
        for volume in pod_spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                name = volume["persistentVolumeClaim"]["claimName"]
                bound = self.core.read_namespaced_persistent_volume_claim(name, self.namespace).spec.volume_name
                claims[name] = Path(self.core.read_persistent_volume(bound).spec.host_path.path)
        return claims

    @staticmethod
    def _kill_after(proc: subprocess.Popen[bytes], grace: float) -> None:
        """The end of a pod's grace period: whatever still runs is killed."""
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


RUNTIME_PODS = "app.kubernetes.io/name=vif-runtime"
MODEL_PODS = "app.kubernetes.io/name in (vif-runtime,vif-router)"  # the replicas and the router's pods


@contextmanager
def operating(
    namespace: str, tmp_path: Path, *args: str, selector: str = RUNTIME_PODS, restart: bool = False
) -> Iterator[StandInKubelet]:
    """The operator (with `args`) and the stand-in kubelet running the pods of `selector` (the replicas by default),
    on routed pod addresses."""
    pods = StandInKubelet(namespace, selector, tmp_path / "pods", restart=restart)
    with running_operator(namespace, tmp_path, *args), routed_pod_ips(), pods as kubelet:
        yield kubelet
