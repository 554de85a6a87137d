"""Driving the local control plane (`make cluster-up`) from tests: kubectl, helm, bounded waits."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.waits import wait_for

__all__ = ["wait_for"]

REPO = Path(__file__).resolve().parents[2]
# The local control plane (make cluster-up), or another cluster (e2e/kind.sh sets VIF_KUBECONFIG).
KUBECONFIG = Path(os.environ.get("VIF_KUBECONFIG", REPO / ".cluster" / "kubeconfig"))
CACHE = Path(os.environ.get("VIF_CACHE_DIR", Path.home() / ".cache" / "vif"))


def kubectl(
    *args: str, stdin: str | None = None, check: bool = True, kubeconfig: Path = KUBECONFIG
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def get(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def put(namespace: str, kind: str, name: str, data: dict[str, str]) -> None:
    """Create or replace a Secret (values encoded) or a ConfigMap of the namespace."""
    if kind == "Secret":
        data = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    manifest = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": namespace}, "data": data}
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


def wait_established(crd: str) -> None:
    """Until the CRD is served. `kubectl wait` alone errors out when it reads a CRD created a moment ago, before the
    API server has written its first status conditions; so it is retried within the bounded wait."""
    args = ("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=10s")
    wait_for(lambda: kubectl(*args, check=False).returncode == 0, f"{crd} established")
    # Established is not yet served: the kind's list path can 404 a moment longer (a watch started then failed
    # its first list in CI), so wait until a list answers.
    plural = crd.split(".", 1)[0]
    wait_for(lambda: kubectl("get", crd, "-A", "-o", "name", check=False).returncode == 0, f"{plural} listed")


def require_cluster() -> None:
    """Fail (never skip) when the control plane is not up."""
    if not KUBECONFIG.exists():
        pytest.fail(f"{KUBECONFIG} is missing: start the control plane with `make cluster-up`")
    ready = kubectl("get", "--raw", "/readyz", check=False)
    if ready.returncode != 0 or ready.stdout.strip() != "ok":
        pytest.fail(f"the control plane is not ready (`make cluster-up`): {ready.stderr.strip()}")


def with_crds() -> Path:
    """The plane, with vif's CRDs applied and served: what every test of the operator starts from."""
    require_cluster()
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    wait_established("inferencemodels.inference.vif.dev")
    return KUBECONFIG


@contextlib.contextmanager
def fresh_namespace(prefix: str = "vif-test") -> Iterator[str]:
    """A namespace of its own for one test, deleted (without waiting) after it."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("create", "serviceaccount", "default", "-n", name, check=False)  # in case the SA controller is slow
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def cached_tool(name: str) -> Path:
    """A binary `make cluster-build` put in the cache (helm), or the ServiceMonitor CRD it fetched."""
    found = sorted(CACHE.glob(f"cluster-bin/*/{name}"))
    if not found:
        pytest.fail(f"{name} is not in {CACHE}/cluster-bin: run `make cluster-build`")
    return found[-1]


def cached_keda_crd(name: str) -> Path:
    """One of KEDA's CRDs at the version e2e/cluster/keda-crds.sh pins, as `make cluster-build` fetched them."""
    script = REPO / "e2e" / "cluster" / "keda-crds.sh"
    found = Path(subprocess.run([script, "--print-dir"], capture_output=True, text=True, check=True).stdout.strip())
    if not (found / name).is_file():
        pytest.fail(f"{name} is not in {found}: run `make cluster-build`")
    return found / name


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    result = subprocess.run([str(cached_tool("helm")), *args], capture_output=True, text=True, env=env, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
    return result
