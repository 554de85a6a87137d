"""A real control plane (`make cluster-up`: kube-apiserver, etcd, controller manager, scheduler, kwok nodes)
and the real operator as a process. If the plane is not up, every test here fails loudly: no skips."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from helpers.cluster import KUBECONFIG, get, kubectl, require_cluster, wait_for
from helpers.processes import free_port

__all__ = ["KUBECONFIG", "get", "kubectl", "wait_for"]

REPO = Path(__file__).resolve().parents[3]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.cluster)


def apply_model(namespace: str, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))


def model_manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "inference.vif.dev/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": spec,
    }


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == kind:
            return cond
    return None


def model_with(name: str, namespace: str, kind: str, status: str) -> dict | None:
    """The model, once its condition `kind` has `status`."""
    model = get("inferencemodel", name, namespace)
    found = condition(model, kind)
    return model if found is not None and found["status"] == status else None


@pytest.fixture(scope="session")
def cluster() -> Path:
    require_cluster()
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/inferencemodels.inference.vif.dev", "--timeout=60s")
    return KUBECONFIG


@pytest.fixture
def namespace(cluster: Path) -> Iterator[str]:
    name = f"vif-test-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("create", "serviceaccount", "default", "-n", name, check=False)  # in case the SA controller is slow
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


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


@pytest.fixture
def operator_process(namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(namespace, tmp_path)
    op.start()
    yield op
    op.kill()
