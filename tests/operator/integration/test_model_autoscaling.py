"""A model's autoscaling for real: the operator's ScaledObject, KEDA and Prometheus (e2e/cluster/autoscaling.sh),
the controller manager's HPA controller, and the model's pod run here on the real engine (tests/helpers/pods.py)
and scraped with the labels a ServiceMonitor would give. Load on that pod raises the model above its minimum; once
the load stops, it comes back down. The other replica is kwok's: nothing runs in it, so only the real pod's queue
counts, as one busy replica's would. A model with minimum 0 goes to zero while idle; a request the real router
holds then wakes it through the router's pending-requests metric, and is answered once the new pod is ready.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from helpers.autoscaling_stack import Stack
from helpers.cluster import get, kubectl, wait_for
from helpers.operator_process import OperatorProcess
from helpers.pods import PodAsProcess, cluster_volume_files, running
from helpers.router_process import running_router
from vif.operator.builders.keda import load_query, pending_query, scraped_service
from vif.operator.model_ref import ModelRef
from vif.operator.spec import InferenceModelSpec

from .conftest import apply_model, model_manifest

MODEL = "smollm2-135m-instruct"
# Two requests per replica: eight in flight on the one real replica ask for four, capped at two.
SPEC = {
    "model": {"path": "/models/SmolLM2-135M-Instruct"},
    "servedName": MODEL,
    "engine": {"maxModelLen": 2048},
    "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "metric": "queue", "target": 2, "scaleDownDelaySeconds": 30},
}
IN_FLIGHT = 8
# KEDA polls every 30 s (its default, which the operator keeps), the HPA controller syncs every 5 s here.
SCALING = 300


def replicas(namespace: str, name: str = "chat") -> int:
    return get("deployment", name, namespace)["spec"]["replicas"]


def ready_condition(namespace: str, name: str) -> dict[str, str] | None:
    conditions = (get("inferencemodel", name, namespace).get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), None)


@contextmanager
def load(base: str) -> Iterator[list[int]]:
    """IN_FLIGHT clients sending long completions back to back while inside; yields the statuses they got, complete
    once the last request in flight has finished."""
    stopped = threading.Event()
    statuses: list[int] = []
    body = {"model": MODEL, "prompt": "Tell me a long story.", "max_tokens": 256, "min_tokens": 256}

    def client() -> None:
        with httpx.Client(base_url=base, timeout=600) as http:
            while not stopped.is_set():
                statuses.append(http.post("/v1/completions", json=body).status_code)

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = [pool.submit(client) for _ in range(IN_FLIGHT)]
        try:
            yield statuses
        finally:
            stopped.set()
        for future in futures:
            future.result()  # a client's transport error fails the test


@contextmanager
def model_under_keda(
    stack: Stack, namespace: str, tmp_path: Path, name: str, spec: dict
) -> Iterator[tuple[PodAsProcess, ModelRef]]:
    """The operator (with Prometheus' address) and the model applied; yields a runner for the model's pod, not
    started."""
    operator = OperatorProcess(namespace, tmp_path, ("--prometheus-address", stack.prometheus))
    operator.start()
    try:
        apply_model(namespace, model_manifest(name, spec))
        deployment = wait_for(lambda: get("deployment", name, namespace), "the model's Deployment")
        ref = ModelRef(name, namespace, "uid", InferenceModelSpec.model_validate(spec))
        yield PodAsProcess(deployment, cluster_volume_files(deployment, namespace), tmp_path / "pod"), ref
    finally:
        operator.kill()


@pytest.fixture
def scaled_model(stack: Stack, namespace: str, tmp_path: Path) -> Iterator[tuple[str, ModelRef]]:
    """The model under KEDA, its first pod running here and scraped; yields that pod's base URL."""
    with model_under_keda(stack, namespace, tmp_path, "chat", SPEC) as (runner, ref):
        # The Deployment is there before its ReplicaSet has made the pod (seconds later on a loaded machine).
        pods = wait_for(lambda: runtime_pods(namespace), "the model's first pod", timeout=120)
        pod = pods[0].removeprefix("pod/")
        with (
            running(runner) as base,
            stack.target(f"127.0.0.1:{runner.metrics_port}", namespace, scraped_service(ref), pod),
        ):
            yield base, ref


def runtime_pods(namespace: str) -> list[str]:
    return kubectl(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=vif-runtime", "-o", "name"
    ).stdout.split()


def test_load_raises_the_replicas_and_idle_brings_them_back(
    stack: Stack, namespace: str, scaled_model: tuple[str, ModelRef]
) -> None:
    base, ref = scaled_model
    query = load_query(ref)  # the operator's own query, on the real runtime's metrics
    wait_for(lambda: stack.query(query) == 0, "Prometheus scraping the idle runtime", timeout=120)
    hpa = wait_for(lambda: get("hpa", "keda-hpa-chat", namespace), "KEDA's HPA of the model", timeout=120)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 2)
    assert replicas(namespace) == 1

    with load(base) as statuses:
        wait_for(lambda: (stack.query(query) or 0) >= IN_FLIGHT / 2, "the queue seen by Prometheus", timeout=120)
        wait_for(lambda: replicas(namespace) == 2, "the model scaled up under load", timeout=SCALING)
    assert statuses and set(statuses) == {200}, sorted(set(statuses))

    wait_for(lambda: stack.query(query) == 0, "the queue empty again", timeout=120)
    wait_for(lambda: replicas(namespace) == 1, "the model back at its minimum once idle", timeout=SCALING)


ZERO_SPEC = {**SPEC, "autoscaling": {**SPEC["autoscaling"], "minReplicas": 0, "maxReplicas": 1}}


def test_scaled_to_zero_a_held_request_wakes_the_model(stack: Stack, namespace: str, tmp_path: Path) -> None:
    with model_under_keda(stack, namespace, tmp_path, "idle", ZERO_SPEC) as (runner, ref):  # no pod runs yet
        # The router as its pod would run, but with the future pod's address as its one endpoint: kwok's pods have
        # no reachable IP. Until that pod's process answers /ready the router holds requests.
        endpoint = ("--endpoint", f"http://127.0.0.1:{runner.port}", "--max-wait", "600", "--probe-interval", "0.5")
        with (
            running_router(tmp_path, *endpoint, wait_on="/health") as router,
            stack.target(router.removeprefix("http://"), namespace, ref.name, "idle-router-0"),
        ):
            wait_for(lambda: replicas(namespace, "idle") == 0, "KEDA taking the idle model to zero", timeout=SCALING)
            ready = wait_for(
                lambda: (
                    (ready_condition(namespace, "idle") or {}).get("reason") == "ScaledToZero"
                    and ready_condition(namespace, "idle")
                ),
                "the model's status to say ScaledToZero",
            )
            assert ready["status"] == "True", ready  # Ready: a request will be served, after a cold start

            body = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(httpx.post, f"{router}/v1/completions", json=body, timeout=900)
                held = pending_query(ref)  # the operator's own query, on the real router's metrics
                wait_for(lambda: (stack.query(held) or 0) >= 1, "the held request seen by Prometheus", timeout=120)
                wait_for(lambda: replicas(namespace, "idle") == 1, "KEDA waking the model", timeout=SCALING)
                assert not answer.done(), answer.result().text  # held all along, not refused
                with running(runner):  # the test, as the kubelet, runs the new pod
                    response = answer.result(timeout=600)
        assert response.status_code == 200, response.text
        assert "Paris" in response.json()["choices"][0]["text"]
