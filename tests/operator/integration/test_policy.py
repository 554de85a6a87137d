"""The shared-cluster policy on the local plane, both layers: the operator refuses a model (Degraded,
PolicyViolation, nothing applied), and the chart's ValidatingAdmissionPolicy makes `kubectl apply` fail, with
the same verdict as the operator's `policy_violations` for every case."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.cluster import REPO, helm
from vif.operator.policy import Policy, policy_violations
from vif.operator.spec import InferenceModelSpec

from .conftest import OperatorProcess, condition, get, kubectl, model_manifest, model_with, wait_for

CHART = str(REPO / "charts" / "vif-operator")
BASE: dict[str, Any] = {"model": {"path": "/models/m"}}
RUNTIME = "reg:5000/team/vif-runtime:0.1.0"  # a registry port, so the chart's repository parsing is tested too


def test_operator_refuses_and_applies_nothing(namespace: str, operator_process: OperatorProcess) -> None:
    spec = {
        **BASE,
        "image": "registry.evil/x:1",
        "service": {"type": "LoadBalancer"},
        "engine": {"extraArgs": ["--trust_remote_code=true"]},
    }
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest("bad", spec)))
    model = wait_for(lambda: model_with("bad", namespace, "Degraded", "True"), "Degraded", timeout=60)
    degraded = condition(model, "Degraded")
    assert degraded is not None and degraded["reason"] == "PolicyViolation", degraded
    assert "spec.image: registry.evil/x:1 is not under an allowed prefix (vif-runtime)" in degraded["message"]
    assert "spec.service.type: LoadBalancer is not an allowed Service type (allowed: ClusterIP)" in degraded["message"]
    assert "spec.engine.extraArgs[0]: --trust_remote_code=true is refused" in degraded["message"]
    assert (condition(model, "Ready") or {}).get("status") == "False"
    children = kubectl("get", "deployment,service,configmap,serviceaccount", "-n", namespace, "-l",
                       "inference.vif.dev/model=bad", "-o", "name").stdout  # fmt: skip
    assert children.strip() == "", children
    assert get("deployment", "bad", namespace) is None


def test_operator_flags_loosen_the_policy(namespace: str, tmp_path: Path) -> None:
    op = OperatorProcess(namespace, tmp_path, ("--allowed-service-type=ClusterIP", "--allowed-service-type=NodePort"))
    op.start()
    try:
        manifest = model_manifest("np", {**BASE, "service": {"type": "NodePort"}})
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))
        wait_for(lambda: get("service", "np", namespace), "the NodePort model's Service", timeout=60)
        assert get("service", "np", namespace)["spec"]["type"] == "NodePort"  # type: ignore[index]
        degraded = condition(get("inferencemodel", "np", namespace), "Degraded") or {}
        assert degraded.get("reason") != "PolicyViolation", degraded
    finally:
        op.kill()


@dataclass(frozen=True)
class Admission:
    """An admission policy rendered from the chart, bound to one namespace, and the operator's Policy alike."""

    namespace: str
    policy: Policy


VALUE_SETS: dict[str, tuple[list[str], Policy]] = {
    "defaults": ([], Policy()),
    "loosened": (
        [
            "--set", "policy.allowedImagePrefixes={reg.io/team}",
            "--set", "policy.allowedServiceAccounts={models}",
            "--set", "policy.allowedServiceTypes={ClusterIP,NodePort}",
            "--set", "policy.allowedPriorityClasses={inference}",
            "--set", "policy.allowedEnvPatterns={MY_*,OMP_NUM_THREADS}",
            "--set", "policy.allowedExtraArgs={--max-num-seqs,--enforce-eager}",
        ],
        Policy(
            allowed_image_prefixes=("reg.io/team",),
            allowed_service_accounts=("models",),
            allowed_service_types=("ClusterIP", "NodePort"),
            allowed_priority_classes=("inference",),
            allowed_env_patterns=("MY_*", "OMP_NUM_THREADS"),
            allowed_extra_args=("--max-num-seqs", "--enforce-eager"),
        ),
    ),
}  # fmt: skip


def dry_run(namespace: str, spec: dict[str, Any], name: str = "m") -> Any:
    manifest = yaml.safe_dump(model_manifest(name, spec))
    return kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=manifest, check=False)


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def admission(cluster: Path, request: pytest.FixtureRequest) -> Iterator[Admission]:
    """The chart's admission-policy template, with unique cluster-scoped names, bound to a fresh namespace.

    A model that breaks the policy is created first, before the policy: it shows what happens to models that
    were admitted earlier.
    """
    values, policy = VALUE_SETS[request.param]
    suffix = uuid.uuid4().hex[:6]
    namespace, release = f"vif-vap-{suffix}", f"vap-{suffix}"
    kubectl("create", "namespace", namespace)
    legacy = {**BASE, "image": "registry.evil/x:1"}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest("legacy", legacy)))
    rendered = helm("template", release, CHART, "-n", "vif-system", "--show-only", "templates/admission-policy.yaml",
                    "--set", f"runtimeImage={RUNTIME}", "--set", f"watchNamespaces={{{namespace}}}", *values).stdout  # fmt: skip
    names = [doc["kind"] + "/" + doc["metadata"]["name"] for doc in yaml.safe_load_all(rendered) if doc]
    kubectl("apply", "-f", "-", stdin=rendered)
    try:
        # The API server picks a new policy up within seconds; until then a violating model is admitted.
        refused = {**BASE, "priorityClassName": "not-allowed-anywhere"}
        wait_for(lambda: dry_run(namespace, refused).returncode != 0, "the admission policy to be active", timeout=60)
        yield Admission(namespace, policy)
    finally:
        kubectl("delete", *names, "--ignore-not-found", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


CASES: dict[str, dict[str, Any]] = {
    "plain": {},
    "runtime-image-other-tag": {"image": "reg:5000/team/vif-runtime:0.2.0-gpu"},
    "runtime-image-digest": {"image": "reg:5000/team/vif-runtime@sha256:" + "0" * 64},
    "runtime-image-sibling": {"image": "reg:5000/team/vif-runtime-evil:1"},
    "runtime-image-child": {"image": "reg:5000/team/vif-runtime/evil:1"},
    "prefix-child": {"image": "reg.io/team/vif:1"},
    "prefix-boundary": {"image": "reg.io/teamevil/vif:1"},
    "evil-image": {"image": "registry.evil/x:1"},
    "service-account": {"serviceAccountName": "models"},
    "service-account-admin": {"serviceAccountName": "admin"},
    "node-port": {"service": {"type": "NodePort"}},
    "load-balancer": {"service": {"type": "LoadBalancer"}},
    "priority-class": {"priorityClassName": "inference"},
    "env-allowed": {
        "env": [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": "2"}, {"name": "OMP_NUM_THREADS", "value": "1"}]
    },
    "env-mine": {"env": [{"name": "MY_SETTING", "value": "1"}]},
    "env-pythonpath": {"env": [{"name": "OMP_NUM_THREADS", "value": "1"}, {"name": "PYTHONPATH", "value": "/x"}]},
    "env-ld-preload": {"env": [{"name": "LD_PRELOAD", "value": "/x.so"}]},
    "env-vllm-path": {"env": [{"name": "VLLM_NCCL_SO_PATH", "value": "/x.so"}]},
    # issue 24's attacks: the token sent elsewhere, a library loaded by CUDA, NCCL or OpenMP
    "env-hf-endpoint": {"env": [{"name": "HF_ENDPOINT", "value": "http://elsewhere"}]},
    "env-proxy": {"env": [{"name": "HTTPS_PROXY", "value": "http://elsewhere:3128"}]},
    "env-aws": {"env": [{"name": "AWS_ENDPOINT_URL", "value": "http://elsewhere"}]},
    "env-cuda-injection": {"env": [{"name": "CUDA_INJECTION64_PATH", "value": "/x.so"}]},
    "env-nccl-plugin": {"env": [{"name": "NCCL_NET_PLUGIN", "value": "/x.so"}]},
    "env-omp-tool": {"env": [{"name": "OMP_TOOL_LIBRARIES", "value": "/x.so"}]},
    "args-allowed": {"engine": {"extraArgs": ["--max-num-seqs", "64", "--enforce-eager", "--seed", "-1"]}},
    "args-underscore": {"engine": {"extraArgs": ["--max_num_seqs=8"]}},
    "args-trust": {"engine": {"extraArgs": ["--max-num-seqs", "64", "--trust_remote_code=true"]}},
    "args-prefix": {"engine": {"extraArgs": ["--max-num-seq", "8"]}},
    "args-dotted": {"engine": {"extraArgs": ["--kv-transfer-config.kv_connector_module_path=evil"]}},
    "args-allowed-dotted": {"engine": {"extraArgs": ["--max-num-seqs.x=1"]}},
    "args-short": {"engine": {"extraArgs": ["-O3"]}},
    "args-operator-set": {"engine": {"extraArgs": ["--allowed-root=/"]}},
    "args-plugin": {"engine": {"extraArgs": ["--reasoning-parser-plugin", "/models/p.py"]}},
    # issue 24's attacks: a plugin file through a config object's key or JSON, a class by name, another leader
    "args-structured-dotted": {
        "engine": {"extraArgs": ["--structured-outputs-config.reasoning_parser_plugin=/etc/vif-chat-template/p.py"]}
    },
    "args-structured-json": {
        "engine": {"extraArgs": ['--structured-outputs-config={"reasoning_parser_plugin": "/etc/vif-chat-template/p"}']}
    },
    "args-speculative": {"engine": {"extraArgs": ['--speculative-config={"model": "evil.Model"}']}},
    "args-ec-manager": {"engine": {"extraArgs": ["--ec-manager-config", '{"ec_connector": "evil.Connector"}']}},
    "args-master-addr": {"engine": {"extraArgs": ["--nnodes", "2", "--node-rank=1", "--master-addr", "10.0.0.9"]}},
    "args-dp-address": {"engine": {"extraArgs": ["--data-parallel-address", "10.0.0.9"]}},
    "args-tool-parser-plugin": {"engine": {"extraArgs": ["--tool-parser-plugin=/p.py"]}},
    # placement: a GPU pool is fine; the control plane, every taint, another team's pool and mesh opt-outs are not
    "placement-gpu-pool": {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
                            ]
                        }
                    ]
                }
            }
        },
        "podAnnotations": {"prometheus.io/scrape": "true"},
    },
    "placement-tolerate-all": {"tolerations": [{"operator": "Exists"}]},
    "placement-control-plane": {
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
    },
    "placement-control-plane-selector": {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
    "placement-other-pool": {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "preference": {"matchExpressions": [{"key": "team-b/pool", "operator": "Exists"}]}}
                ]
            }
        }
    },
    "placement-node-name": {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
                    ]
                }
            }
        }
    },
    "placement-mesh-opt-out": {"podAnnotations": {"sidecar.istio.io/inject": "false"}},
    "s3-aws": {"model": {"s3": {"uri": "s3://models/x"}, "cache": {"size": "1Gi"}}},
    "s3-elsewhere": {
        "model": {"s3": {"uri": "s3://models/x", "endpoint": "http://elsewhere.example:9000"}, "cache": {"size": "1Gi"}}
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_admission_agrees_with_the_operator(admission: Admission, case: str) -> None:
    spec = {**BASE, **CASES[case]}
    expected = policy_violations(InferenceModelSpec.model_validate(spec), admission.policy, RUNTIME)
    result = dry_run(admission.namespace, spec)
    assert (result.returncode != 0) == bool(expected), (expected, result.stderr)
    for message in expected:  # the admission message names the same field
        assert message.split("[", 1)[0].split(":", 1)[0] in result.stderr, (message, result.stderr)


@pytest.mark.parametrize("admission", ["defaults"], indirect=True)
def test_kubectl_apply_fails_with_the_message(admission: Admission) -> None:
    ns = admission.namespace
    cases = [
        ({"image": "registry.evil/x:1"}, "spec.image: registry.evil/x:1 is not under an allowed prefix (reg:5000/team/vif-runtime)"),
        ({"serviceAccountName": "admin"}, "spec.serviceAccountName: admin is not an allowed ServiceAccount (none allowed: leave it unset)"),
        ({"service": {"type": "LoadBalancer"}}, "spec.service.type: LoadBalancer is not an allowed Service type (allowed: ClusterIP)"),
        ({"priorityClassName": "high"}, "spec.priorityClassName: high is not an allowed priority class (none allowed: leave it unset)"),
        ({"env": [{"name": "PYTHONPATH", "value": "/x"}, {"name": "TZ"}, {"name": "HF_ENDPOINT"}]}, "spec.env: PYTHONPATH, HF_ENDPOINT refused: not an allowed env name"),
        ({"engine": {"extraArgs": ["--max-num-seqs", "64", "--trust_remote_code=true"]}}, "spec.engine.extraArgs: --trust_remote_code=true refused: only flags on the allow-list"),
    ]  # fmt: skip
    for extra, message in cases:
        manifest = yaml.safe_dump(model_manifest("refused", {**BASE, **extra}))
        result = kubectl("apply", "-n", ns, "-f", "-", stdin=manifest, check=False)
        assert result.returncode != 0 and message in result.stderr, (message, result.stderr)
        assert get("inferencemodel", "refused", ns) is None


def test_models_admitted_before_the_policy_can_still_be_labelled_and_deleted(admission: Admission) -> None:
    """Only a new or changed spec is checked: the operator's annotations and finalizer removals still work."""
    ns = admission.namespace
    kubectl("annotate", "inferencemodel", "legacy", "-n", ns, "example.com/note=metadata-only", "--overwrite")
    patch = kubectl("patch", "inferencemodel", "legacy", "-n", ns, "--type=merge",
                    "-p", '{"spec": {"image": "registry.evil/y:2"}}', check=False)  # fmt: skip
    assert patch.returncode != 0 and "spec.image: registry.evil/y:2 is not under an allowed prefix" in patch.stderr
    kubectl("delete", "inferencemodel", "legacy", "-n", ns, "--wait=true", "--timeout=30s")


def test_binding_is_scoped_to_the_watched_namespaces(admission: Admission, namespace: str) -> None:
    evil = {**BASE, "image": "registry.evil/x:1"}
    assert dry_run(admission.namespace, evil).returncode != 0
    assert dry_run(namespace, evil).returncode == 0
