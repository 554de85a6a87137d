"""Many InferenceModels at once: created from several threads, Ready watched, the operator's metrics read.

Shared by the 100-model cluster test and `make bench-operator`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch

from helpers.cluster import KUBECONFIG, kubectl
from vif.operator.spec import GROUP, PLURAL, VERSION

APPLIERS = 8
FLEET_SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}


def fleet(count: int, spec: dict[str, Any] = FLEET_SPEC) -> list[dict[str, Any]]:
    return [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceModel", "metadata": {"name": f"m{i:04d}"}, "spec": spec}
        for i in range(count)
    ]


def _models_api() -> k8s_client.CustomObjectsApi:
    config = k8s_client.Configuration()
    k8s_config.load_kube_config(str(KUBECONFIG), client_configuration=config)
    config.connection_pool_maxsize = APPLIERS
    return k8s_client.CustomObjectsApi(k8s_client.ApiClient(config))


def apply_fleet(namespace: str, count: int) -> None:
    """Create `count` models at once: from several threads, as a platform's CI or GitOps tool would. (`kubectl apply`
    of one List sends them one after another, and on these 2 cores took longer than the operator needed.)"""
    api = _models_api()

    def create(model: dict[str, Any]) -> None:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, model)

    with ThreadPoolExecutor(APPLIERS) as pool:
        list(pool.map(create, fleet(count)))


def wait_all_ready(namespace: str, count: int, started: float, timeout: float, progress: bool = False) -> float:
    """Seconds from `started` (a time.monotonic()) until `count` models in the namespace are Ready, seen through
    one watch (polling a list of a thousand models every second would load the API server more than the
    operator does). Fails after `timeout`."""
    api = _models_api()
    ready: set[str] = set()
    last_print = 0.0
    stream = watch.Watch()
    for event in stream.stream(api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                               timeout_seconds=int(timeout)):  # fmt: skip
        model = event["object"]
        conditions = (model.get("status") or {}).get("conditions", [])
        name = model["metadata"]["name"]
        if event["type"] != "DELETED" and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            ready.add(name)
        else:
            ready.discard(name)
        elapsed = time.monotonic() - started
        if progress and elapsed - last_print > 10:
            print(f"  {len(ready)}/{count} Ready after {elapsed:.0f} s", flush=True)
            last_print = elapsed
        if len(ready) >= count:
            stream.stop()
            return elapsed
    raise AssertionError(f"only {len(ready)}/{count} models Ready after {timeout:.0f} s\n{fleet_report(namespace)}")


def fleet_report(namespace: str) -> str:
    """Where a fleet that is late stands: why its models are not Ready, its Deployments' and Pods' states."""

    def items(kind: str) -> list[dict[str, Any]]:
        return json.loads(kubectl("get", kind, "-n", namespace, "-o", "json").stdout)["items"]

    reasons = Counter(
        f"{c['reason']}: {c.get('message', '')[:120]}"
        for model in items("inferencemodels")
        for c in (model.get("status") or {}).get("conditions", [])
        if c["type"] == "Ready" and c["status"] != "True"
    )
    deployments = Counter(
        (d["metadata"]["labels"].get("app.kubernetes.io/name"), (d.get("status") or {}).get("readyReplicas", 0) > 0)
        for d in items("deployments")
    )
    pods = Counter((p.get("status") or {}).get("phase") for p in items("pods"))
    return f"not Ready, by reason: {dict(reasons)}\ndeployments (app, ready): {dict(deployments)}\npods: {dict(pods)}"


def operator_metrics(port: int) -> dict[str, float]:
    """The operator's Prometheus samples, by series (name with its labels)."""
    samples = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def api_requests(samples: dict[str, float], writes_only: bool = False) -> float:
    return sum(
        value
        for series, value in samples.items()
        if series.startswith("vif_operator_api_requests_total{") and not (writes_only and 'verb="GET"' in series)
    )


def reconciles(samples: dict[str, float]) -> float:
    return sum(v for s, v in samples.items() if s.startswith("vif_operator_reconciles_total{"))
