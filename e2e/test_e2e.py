"""End to end, as a user: helm install, kubectl apply the CPU example, Ready, the three protocols through
the Service, kubectl scale, delete with nothing left behind."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from helpers.cluster import KUBECONFIG, REPO, get, helm, kubectl, require_cluster, wait_for
from helpers.images import Container, Mount, built_images
from helpers.pods import PodAsProcess, PodInImage, cluster_volume_files, pod_mounts, pod_user, running
from helpers.processes import free_port, stop_group

from .conftest import MODE

CHART = str(REPO / "charts" / "vif-operator")
EXAMPLE = REPO / "docs" / "examples" / "inferencemodels" / "cpu-smollm2.yaml"
MODEL = "smollm2-135m-instruct"


def ready_condition(name: str, namespace: str) -> dict | None:
    model = get("inferencemodel", name, namespace)
    for cond in ((model or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == "Ready" and cond["status"] == "True":
            return model
    return None


def service_account_kubeconfig(namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount: the operator gets only the chart's RBAC."""
    admin = yaml.safe_load(KUBECONFIG.read_text())
    token = kubectl("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip()
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def service_account_volume(namespace: str, account: str, path: Path) -> tuple[Mount, dict[str, str]]:
    """What the kubelet gives a pod of the chart's ServiceAccount: its token, the CA and namespace files, and the
    variables that locate the API server (the client's in-cluster configuration)."""
    cluster = yaml.safe_load(KUBECONFIG.read_text())["clusters"][0]["cluster"]
    path.mkdir()
    (path / "token").write_text(kubectl("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip())
    if "certificate-authority-data" in cluster:
        (path / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    else:
        shutil.copy(cluster["certificate-authority"], path / "ca.crt")
    (path / "namespace").write_text(namespace)
    server = urlsplit(cluster["server"])
    env = {"KUBERNETES_SERVICE_HOST": str(server.hostname), "KUBERNETES_SERVICE_PORT": str(server.port)}
    # The kubelet's /var/run/secrets/...: /var/run links to /run in the image, and buildah's chroot isolation does
    # not follow links in mount targets.
    return Mount(path, "/run/secrets/kubernetes.io/serviceaccount", read_only=True), env


@contextlib.contextmanager
def operator_as_process(release: str, release_ns: str, tmp: Path) -> Iterator[None]:
    """The chart's operator Deployment, its container's args run here under its ServiceAccount: from its image
    (`make images`: the image's entry point, the pod's user and mounts) or from the checkout's venv."""
    deployment = get("deployment", f"{release}-vif-operator", release_ns)
    assert deployment is not None, "helm did not create the operator Deployment"
    pod = deployment["spec"]["template"]["spec"]
    args = [a for a in pod["containers"][0]["args"] if not a.startswith(("--health-port", "--metrics-port"))]
    health = free_port()
    args += [f"--health-port={health}", "--metrics-port=0"]
    log = (tmp / "operator.log").open("wb")
    images = built_images()
    env: dict[str, str] | None = None  # the container's environment is the image's, not this process's
    with contextlib.ExitStack() as stack:
        if images is None:
            kubeconfig = service_account_kubeconfig(release_ns, pod["serviceAccountName"], tmp / "sa-kubeconfig")
            env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
            cmd = [str(Path(sys.executable).parent / "vif-operator"), *args]
        else:
            container = stack.enter_context(Container(images, pod["containers"][0]["image"]))
            account, in_cluster = service_account_volume(release_ns, pod["serviceAccountName"], tmp / "sa")
            mounts = (*pod_mounts(pod, tmp / "operator", {}), account)
            argv = [*container.config()["Entrypoint"], *args]
            cmd = container.command(argv, user=pod_user(pod), env=in_cluster, mounts=mounts)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the operator exited: {(tmp / 'operator.log').read_text()[-3000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(healthy, "the operator's /healthz")
            yield
        finally:
            stop_group(proc, grace=10)
            log_text = (tmp / "operator.log").read_text()
            forbidden = [line for line in log_text.splitlines() if "forbidden" in line.lower()]
            assert not forbidden, f"the chart's RBAC refused the operator: {forbidden[:3]}"


@contextlib.contextmanager
def service_endpoint(name: str, namespace: str, tmp: Path) -> Iterator[str]:
    """A base URL that reaches the model's Service."""
    service = get("service", name, namespace)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    if MODE == "kind":
        port = free_port()
        forward = subprocess.Popen(
            ["kubectl", "port-forward", f"svc/{name}", f"{port}:{service['spec']['ports'][0]['port']}", "-n", namespace]
        )
        try:
            wait_for(lambda: _answers(f"http://127.0.0.1:{port}/ready"), "the port-forward", timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            forward.terminate()
        return
    # local: the Service's endpoints are kwok's fake pod IPs; the pod's container runs here instead
    deployment = get("deployment", name, namespace)
    container_port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    selector = f"kubernetes.io/service-name={name}"

    def serving_ports() -> list[dict]:
        slices = json.loads(kubectl("get", "endpointslices", "-n", namespace, "-l", selector, "-o", "json").stdout)
        ready = [s for s in slices["items"] if any(e["conditions"].get("ready") for e in s.get("endpoints") or [])]
        return [p for s in ready for p in s.get("ports") or []]

    # the endpoint-slice controller follows the pods a moment after the model turns Ready
    ports = wait_for(serving_ports, "the Service's endpoints")
    assert {"name": "http", "port": container_port, "protocol": "TCP"} in ports
    volumes = cluster_volume_files(deployment, namespace)
    images = built_images()
    if images is None:
        with running(PodAsProcess(deployment, volumes, tmp)) as base:
            yield base
        return
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    with Container(images, image) as container, running(PodInImage(deployment, volumes, tmp, container)) as base:
        yield base


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    require_cluster()
    run = uuid.uuid4().hex[:6]
    release, release_ns, models_ns = f"vif-{run}", f"vif-system-{run}", f"models-{run}"
    kubectl("create", "namespace", models_ns)
    values = ["--set", f"watchNamespaces={{{models_ns}}}"]
    images = built_images()
    if images is not None:  # the images `make images` built, by the tags of their inputs' hash
        repository, _, tag = images.operator.rpartition(":")
        values += ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]
        values += ["--set", f"runtimeImage={images.runtime}"]
    helm("install", release, CHART, "-n", release_ns, "--create-namespace", *values)
    try:
        if MODE == "kind":
            yield release, release_ns, models_ns
        else:
            with operator_as_process(release, release_ns, tmp_path):
                yield release, release_ns, models_ns
        helm("uninstall", release, "-n", release_ns, "--wait")
        left = kubectl("get", "clusterroles,clusterrolebindings,deployments,serviceaccounts,services", "-A",
                       "-l", f"app.kubernetes.io/instance={release},app.kubernetes.io/name=vif-operator", "-o", "name").stdout  # fmt: skip
        assert not left.strip(), f"helm uninstall left {left}"
    finally:
        helm("uninstall", release, "-n", release_ns, check=False)
        kubectl("delete", "namespace", release_ns, models_ns, "--wait=false", check=False)


def test_install_serve_scale_delete(installed: tuple[str, str, str], tmp_path: Path) -> None:
    release, release_ns, ns = installed
    notes = helm("status", release, "-n", release_ns).stdout
    assert "kubectl get im" in notes

    kubectl("apply", "-n", ns, "-f", str(EXAMPLE))
    model = wait_for(lambda: ready_condition("smollm2", ns), "the example to be Ready", timeout=600)
    assert model["status"]["endpoint"] == f"http://smollm2.{ns}.svc.cluster.local:80/v1"
    assert model["status"]["readyReplicas"] == 1

    with service_endpoint("smollm2", ns, tmp_path) as base, httpx.Client(base_url=base, timeout=120) as client:
        question = [{"role": "user", "content": "What is the capital of France?"}]
        chat = client.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": question, "temperature": 0, "max_tokens": 20}
        )
        assert "Paris" in chat.json()["choices"][0]["message"]["content"]
        completion = client.post(
            "/v1/completions",
            json={"model": MODEL, "prompt": "The capital of France is", "temperature": 0, "max_tokens": 4},
        )
        assert "Paris" in completion.json()["choices"][0]["text"]
        generate = client.post(
            "/generate",
            json={
                "model": MODEL,
                "prompt": "And of Germany?",
                "history_input": ["Capital of France?"],
                "history_output": ["Paris."],
                "max_tokens": 10,
            },
        )
        assert generate.json()["object"] == "generate" and generate.json()["output"]

    kubectl("scale", "im/smollm2", "-n", ns, "--replicas=2")
    wait_for(lambda: get("deployment", "smollm2", ns)["spec"]["replicas"] == 2, "the Deployment at 2 replicas")
    wait_for(
        lambda: (get("inferencemodel", "smollm2", ns)["status"] or {}).get("readyReplicas") == 2,
        "2 ready replicas",
        # bounded, not timed: removing the first pod's 7 GB container (vfs) loads the disk etcd writes to
        timeout=300,
    )

    kubectl("delete", "-n", ns, "-f", str(EXAMPLE))
    leftovers = "deployments,services,configmaps,hpa,pdb,replicasets,pods"

    def nothing_left() -> bool:
        out = kubectl(
            "get", leftovers, "-n", ns, "-l", "app.kubernetes.io/managed-by=vif-operator", "-o", "name"
        ).stdout
        pods = kubectl("get", "pods", "-n", ns, "-o", "name").stdout
        return not out.strip() and not pods.strip()

    wait_for(nothing_left, "every child of the model to be gone", timeout=120)
