"""The shared-cluster policy: each rule allowed and refused, the defaults, the flags, and the chart's copy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from vif.operator.engine_flags import ALLOWED_EXTRA_ARGS
from vif.operator.policy import (
    ALLOWED_ENV_PATTERNS,
    ALLOWED_NODE_LABEL_KEYS,
    ALLOWED_POD_ANNOTATION_KEYS,
    ALLOWED_TOLERATION_KEYS,
    Policy,
    add_policy_arguments,
    image_repository,
    policy_from_args,
    policy_violations,
)
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec

RUNTIME = "vif-runtime:0.1.0"
VALUES = Path(__file__).resolve().parents[2] / "charts" / "vif-operator" / "values.yaml"


DEFAULT = Policy()


def violations(policy: Policy = DEFAULT, runtime: str = RUNTIME, **spec: Any) -> list[str]:
    return policy_violations(InferenceModelSpec.model_validate({"model": {"path": "/m"}, **spec}), policy, runtime)


def test_a_plain_model_meets_the_default_policy() -> None:
    assert violations() == []
    assert OperatorSettings().policy == Policy()


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("vif-runtime:0.1.0", "vif-runtime"),
        ("vif-runtime", "vif-runtime"),
        ("reg:5000/team/vif-runtime@sha256:abc", "reg:5000/team/vif-runtime"),
        ("reg:5000/team/vif-runtime:1.2@sha256:abc", "reg:5000/team/vif-runtime"),
        ("reg:5000/team/vif-runtime", "reg:5000/team/vif-runtime"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert image_repository(image) == repository


@pytest.mark.parametrize("image", ["vif-runtime:0.2.0-gpu", "vif-runtime@sha256:abc", "vif-runtime", ""])
def test_default_allows_the_runtime_repository(image: str) -> None:
    assert violations(image=image) == []


@pytest.mark.parametrize("image", ["registry.evil/x:1", "vif-runtime/evil:1", "vif-runtime-evil:1", "evil/vif-runtime"])
def test_default_refuses_other_repositories(image: str) -> None:
    assert violations(image=image) == [f"spec.image: {image} is not under an allowed prefix (vif-runtime)"]


def test_image_prefix_is_a_path_boundary() -> None:
    policy = Policy(allowed_image_prefixes=("reg.io/team", "reg:5000/ml/"))
    for image in ["reg.io/team/x:1", "reg.io/team:1", "reg.io/team/a/b@sha256:0", "reg:5000/ml/vif:2"]:
        assert violations(policy, image=image) == [], image
    for image in ["reg.io/teamevil/x:1", "reg.io/x:1", "vif-runtime:0.1.0", "reg:5000/mlx/vif:2"]:
        (message,) = violations(policy, image=image)
        assert message == f"spec.image: {image} is not under an allowed prefix (reg.io/team, reg:5000/ml/)"


def test_service_account_must_be_unset_by_default() -> None:
    assert violations(serviceAccountName="admin") == [
        "spec.serviceAccountName: admin is not an allowed ServiceAccount (none allowed: leave it unset)"
    ]
    policy = Policy(allowed_service_accounts=("models",))
    assert violations(policy, serviceAccountName="models") == []
    assert violations(policy, serviceAccountName="admin") == [
        "spec.serviceAccountName: admin is not an allowed ServiceAccount (allowed: models)"
    ]


def test_service_type_is_cluster_ip_by_default() -> None:
    assert violations(service={"type": "ClusterIP"}) == []
    assert violations(service={"type": "LoadBalancer"}) == [
        "spec.service.type: LoadBalancer is not an allowed Service type (allowed: ClusterIP)"
    ]
    assert (
        violations(Policy(allowed_service_types=("ClusterIP", "LoadBalancer")), service={"type": "LoadBalancer"}) == []
    )


def test_priority_class_must_be_unset_by_default() -> None:
    assert violations(priorityClassName="system-node-critical") == [
        "spec.priorityClassName: system-node-critical is not an allowed priority class (none allowed: leave it unset)"
    ]
    assert violations(Policy(allowed_priority_classes=("inference",)), priorityClassName="inference") == []


@pytest.mark.parametrize(
    "name",
    [
        # code and libraries loaded from a path
        "PYTHONPATH",
        "LD_PRELOAD",
        "PATH",
        "VLLM_PLUGINS",
        "VLLM_NCCL_SO_PATH",
        "CUDA_INJECTION64_PATH",
        "NCCL_NET_PLUGIN",
        "NCCL_TUNER_PLUGIN",
        "OMP_TOOL_LIBRARIES",
        # where credentials and traffic go
        "HF_ENDPOINT",
        "HF_HUB_CACHE",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "HTTPS_PROXY",
        "http_proxy",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        # vif's own, and the caches the operator places
        "VIF_API_KEYS",
        "HOME",
        "HF_HOME",
        # near misses of allowed names
        "OMP_NUM_THREADS_X",
        "TZ2",
    ],
)
def test_env_names_off_the_allow_list_are_refused(name: str) -> None:
    env = [{"name": "OMP_NUM_THREADS", "value": "1"}, {"name": name, "value": "x"}]
    assert violations(env=env) == [f"spec.env[1].name: {name} is not an allowed env name (docs/security.md)"]


@pytest.mark.parametrize("name", ["VLLM_CPU_KVCACHE_SPACE", "OMP_NUM_THREADS", "NCCL_DEBUG", "TZ"])
def test_allowed_env_names(name: str) -> None:
    assert violations(env=[{"name": name, "value": "1"}]) == []


def test_vllms_allowed_env_names_are_vllms() -> None:
    import vllm.envs

    ours = [p for p in ALLOWED_ENV_PATTERNS if p.startswith("VLLM_")]
    assert [p for p in ours if p not in vllm.envs.environment_variables] == []


def test_env_patterns_know_only_star_and_question_mark() -> None:
    policy = Policy(allowed_env_patterns=("A?C", "X.*"))
    assert violations(policy, env=[{"name": "ABC"}, {"name": "X.YZ"}, {"name": "XaYZ"}, {"name": "AC"}]) == [
        "spec.env[2].name: XaYZ is not an allowed env name (docs/security.md)",
        "spec.env[3].name: AC is not an allowed env name (docs/security.md)",
    ]


@pytest.mark.parametrize(
    ("arg", "problem"),
    [
        ("--trust-remote-code", "--trust-remote-code: it loads code, a class or serialised tensors"),
        ("--trust_remote_code=true", "--trust-remote-code: it loads code, a class or serialised tensors"),
        ("--no-trust-remote-code", "--no-trust-remote-code: it loads code, a class or serialised tensors"),
        (
            "--kv-transfer-config.kv_connector_module_path=evil",
            "--kv-transfer-config: its value is a config object, whose keys can name code or paths",
        ),
        ("--master-addr=10.0.0.9", "--master-addr: it names a path, a host or a credential"),
        ("--allowed-root=/", "--allowed-root: the operator sets it from the spec"),
        ("--max-num-seqs.x=1", "--max-num-seqs takes a plain value, not keys"),
        ("--trust-remote", "--trust-remote is not on the allow-list of flags (docs/security.md)"),
        ("-cc.backend=evil.compile", "-cc is not on the allow-list of flags (docs/security.md)"),
        ("--Enforce-Eager", "--Enforce-Eager is not on the allow-list of flags (docs/security.md)"),
    ],
)
def test_refused_extra_args_name_the_reason(arg: str, problem: str) -> None:
    (message,) = violations(engine={"extraArgs": ["--max-num-seqs", "64", arg]})
    assert message == f"spec.engine.extraArgs[2]: {arg} is refused ({problem})"


def test_values_are_not_flags() -> None:
    assert (
        violations(engine={"extraArgs": ["--load-format", "safetensors", "--seed", "-1", "--watermark", "-.5"]}) == []
    )


def test_every_violation_is_reported() -> None:
    found = violations(
        image="evil:1",
        serviceAccountName="admin",
        service={"type": "NodePort"},
        priorityClassName="high",
        env=[{"name": "LD_PRELOAD"}],
        engine={"extraArgs": ["--trust-remote-code"]},
    )
    fields = [m.split(":", 1)[0] for m in found]
    assert fields == [
        "spec.image",
        "spec.serviceAccountName",
        "spec.service.type",
        "spec.priorityClassName",
        "spec.env[0].name",
        "spec.engine.extraArgs[0]",
    ]


def parse(argv: list[str]) -> Policy:
    parser = argparse.ArgumentParser()
    add_policy_arguments(parser)
    return policy_from_args(parser.parse_args(argv))


def test_flags_default_to_the_safe_policy() -> None:
    assert parse([]) == Policy()


def test_flags_round_trip() -> None:
    policy = parse(
        [
            "--allowed-image-prefix=reg.io/a",
            "--allowed-image-prefix=reg.io/b",
            "--allowed-service-account=models",
            "--allowed-service-type=ClusterIP",
            "--allowed-service-type=LoadBalancer",
            "--allowed-priority-class=inference",
            "--allowed-env-patterns=OMP_*, TZ",
            "--allowed-extra-args=--max-num-seqs",
            "--allowed-toleration-keys=gpu",
            "--allowed-node-label-keys=pool,zone",
            "--allowed-pod-annotation-keys=team/*",
        ]
    )
    assert policy == Policy(
        allowed_image_prefixes=("reg.io/a", "reg.io/b"),
        allowed_service_accounts=("models",),
        allowed_service_types=("ClusterIP", "LoadBalancer"),
        allowed_priority_classes=("inference",),
        allowed_env_patterns=("OMP_*", "TZ"),
        allowed_extra_args=("--max-num-seqs",),
        allowed_toleration_keys=("gpu",),
        allowed_node_label_keys=("pool", "zone"),
        allowed_pod_annotation_keys=("team/*",),
    )


def test_an_empty_allowed_list_allows_nothing() -> None:
    policy = parse(["--allowed-env-patterns=", "--allowed-extra-args="])
    assert (policy.allowed_env_patterns, policy.allowed_extra_args) == ((), ())
    found = violations(policy, env=[{"name": "TZ"}], engine={"extraArgs": ["--max-num-seqs", "8"]})
    assert [m.split(":", 1)[0] for m in found] == ["spec.env[0].name", "spec.engine.extraArgs[0]"]


def test_chart_defaults_are_the_operator_defaults() -> None:
    values = yaml.safe_load(VALUES.read_text())["policy"]
    assert values["allowedImagePrefixes"] == list(Policy.allowed_image_prefixes)
    assert values["allowedServiceAccounts"] == list(Policy.allowed_service_accounts)
    assert values["allowedServiceTypes"] == list(Policy.allowed_service_types)
    assert values["allowedPriorityClasses"] == list(Policy.allowed_priority_classes)
    assert values["allowedEnvPatterns"] == list(ALLOWED_ENV_PATTERNS)
    assert values["allowedExtraArgs"] == list(ALLOWED_EXTRA_ARGS)
    assert values["allowedTolerationKeys"] == list(ALLOWED_TOLERATION_KEYS)
    assert values["allowedNodeLabelKeys"] == list(ALLOWED_NODE_LABEL_KEYS)
    assert values["allowedPodAnnotationKeys"] == list(ALLOWED_POD_ANNOTATION_KEYS)
    assert values["admission"]["enabled"] is True


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def required(*keys: str) -> dict[str, Any]:
    terms = [{"matchExpressions": [{"key": k, "operator": "Exists"}]} for k in keys]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}


def preferred(key: str) -> dict[str, Any]:
    term = {"weight": 1, "preference": {"matchFields": [{"key": key, "operator": "In", "values": ["n1"]}]}}
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [term]}}


def test_a_gpu_pool_placement_meets_the_default_policy() -> None:
    assert (
        violations(
            tolerations=[GPU_TOLERATION],
            nodeSelector={"nvidia.com/gpu.present": "true", "kubernetes.io/arch": "amd64"},
            affinity=required("topology.kubernetes.io/zone"),
            podAnnotations={"prometheus.io/scrape": "true"},
        )
        == []
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"tolerations": [GPU_TOLERATION, {"operator": "Exists"}]},
            "spec.tolerations[1]: a toleration without a key tolerates every taint",
        ),
        (
            {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
            "spec.tolerations[0].key: node-role.kubernetes.io/control-plane is not an allowed taint key "
            "(allowed: nvidia.com/gpu, amd.com/gpu)",
        ),
        (
            {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
            "spec.nodeSelector: node-role.kubernetes.io/control-plane is not an allowed node label key",
        ),
        (
            {"affinity": required("kubernetes.io/arch", "team-b.example.com/pool")},
            "spec.affinity.nodeAffinity: team-b.example.com/pool is not an allowed node label key",
        ),
        (
            {"affinity": preferred("metadata.name")},
            "spec.affinity.nodeAffinity: metadata.name is not an allowed node label key",
        ),
        (
            {"podAnnotations": {"sidecar.istio.io/inject": "false"}},
            "spec.podAnnotations: sidecar.istio.io/inject is not an allowed annotation key",
        ),
    ],
)
def test_placement_off_the_key_lists_is_refused(spec: dict[str, Any], message: str) -> None:
    (found,) = violations(**spec)
    assert found.startswith(message), found


def test_pod_affinity_is_not_node_placement() -> None:
    anti = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    assert violations(affinity=anti) == []


def test_s3_credentials_go_only_to_allowed_stores() -> None:
    def refused(endpoint: str | None, *allowed: str) -> list[str]:
        s3: dict = {"uri": "s3://models/x", **({"endpoint": endpoint} if endpoint else {})}
        spec = InferenceModelSpec.model_validate({"model": {"s3": s3, "cache": {"size": "1Gi"}}})
        return policy_violations(spec, Policy(allowed_s3_endpoints=allowed), "vif-runtime:0.1.0")

    assert refused(None) == []  # AWS's own
    assert refused("http://elsewhere.example:9000") == [
        "spec.model.s3.endpoint: http://elsewhere.example:9000 is not an allowed S3 endpoint"
        " (none allowed: leave it unset)"
    ]
    assert refused("http://store.infra:9000/", "http://store.infra:9000") == []
    assert refused("http://store.infra:90001", "http://store.infra:9000")
