"""Model pods pass the `restricted` Pod Security Standard, and a refused pod shows in the model's status at once.

The plane's PodSecurity admission and controllers are real; kwok's node only pretends to run the containers.
"""

from __future__ import annotations

import json

from .conftest import REPO, OperatorProcess, condition, get, kubectl, model_with, wait_for

CPU_EXAMPLE = REPO / "docs" / "examples" / "inferencemodels" / "cpu-smollm2.yaml"
SELECTOR = "app.kubernetes.io/instance=smollm2"


def enforce_restricted(namespace: str) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    # The label is enforced: a plain pod is refused (so a Ready model below is no accident of a lax plane).
    plain = kubectl("run", "plain", "-n", namespace, "--image=busybox", "--dry-run=server", check=False)
    assert plain.returncode != 0 and "violates PodSecurity" in plain.stderr, plain.stderr


def test_cpu_example_is_ready_in_a_restricted_namespace(namespace: str, operator_process: OperatorProcess) -> None:
    enforce_restricted(namespace)
    kubectl("apply", "-n", namespace, "-f", str(CPU_EXAMPLE))
    wait_for(lambda: model_with("smollm2", namespace, "Ready", "True"), "the CPU example Ready", timeout=120)

    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", SELECTOR, "-o", "json").stdout)["items"]
    assert pods, "no pod of the model"
    pod = pods[0]["spec"]
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("smollm2", False)
    assert not [v for v in pod["volumes"] if "projected" in v]  # no ServiceAccount token mounted
    account = get("serviceaccount", "smollm2", namespace)
    assert account is not None and account["automountServiceAccountToken"] is False


def test_refused_pods_make_the_model_degraded(namespace: str, operator_process: OperatorProcess) -> None:
    """A quota of 0 pods: the ReplicaSet's creates fail, and the model says why without waiting for a deadline."""
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"pods": "0"}},
    }
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(quota))
    kubectl("apply", "-n", namespace, "-f", str(CPU_EXAMPLE))

    def degraded() -> dict | None:
        found = condition(get("inferencemodel", "smollm2", namespace), "Degraded")
        return found if found is not None and found["reason"] == "FailedCreate" else None

    found = wait_for(degraded, "Degraded with reason FailedCreate", timeout=30)
    assert found["status"] == "True" and "quota" in found["message"], found
    ready = condition(get("inferencemodel", "smollm2", namespace), "Ready")
    assert ready is not None and ready["status"] == "False"
