"""The shared-cluster policy: each rule allowed and refused, the defaults, the flags, and the chart's copy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from vif.operator.builders import OperatorSettings
from vif.operator.policy import (
    REFUSED_ENV_PATTERNS,
    REFUSED_EXTRA_ARGS,
    Policy,
    add_policy_arguments,
    image_repository,
    policy_from_args,
    policy_violations,
)
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
    ("name", "pattern"),
    [
        ("PYTHONPATH", "PYTHON*"),
        ("PYTHONSTARTUP", "PYTHON*"),
        ("LD_PRELOAD", "LD_*"),
        ("PATH", "PATH"),
        ("VLLM_PLUGINS", "VLLM_PLUGINS"),
        ("VLLM_NCCL_SO_PATH", "VLLM_*_PATH"),
        ("VLLM_LOGGING_CONFIG_PATH", "VLLM_*_PATH"),
        ("VIF_API_KEYS", "VIF_*"),
        ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_*"),
        ("HOME", "HOME"),
        ("XDG_CACHE_HOME", "XDG_*"),
        ("NUMBA_CACHE_DIR", "NUMBA_*"),
        ("HF_HOME", "HF_HOME"),
    ],
)
def test_refused_env_names(name: str, pattern: str) -> None:
    env = [{"name": "OK", "value": "1"}, {"name": name, "value": "x"}]
    assert violations(env=env) == [f"spec.env[1].name: {name} is refused (matches {pattern})"]


@pytest.mark.parametrize(
    "name", ["VLLM_CPU_KVCACHE_SPACE", "HF_TOKEN", "OMP_NUM_THREADS", "MYPYTHON", "PATHS", "LD", "HOMEPAGE"]
)
def test_allowed_env_names(name: str) -> None:
    assert violations(env=[{"name": name, "value": "1"}]) == []


def test_env_patterns_know_only_star_and_question_mark() -> None:
    policy = Policy(refused_env_patterns=("A?C", "X.*"))
    assert violations(policy, env=[{"name": "ABC"}, {"name": "X.YZ"}, {"name": "XaYZ"}, {"name": "AC"}]) == [
        "spec.env[0].name: ABC is refused (matches A?C)",
        "spec.env[1].name: X.YZ is refused (matches X.*)",
    ]


@pytest.mark.parametrize(
    ("arg", "flag"),
    [
        ("--trust-remote-code", "--trust-remote-code"),
        ("--trust_remote_code", "--trust-remote-code"),
        ("--trust-remote-code=true", "--trust-remote-code"),
        ("--Trust-Remote-Code", "--trust-remote-code"),
        ("--trust-remote", "--trust-remote-code"),  # argparse expands a unique prefix
        ("--worker-extension-cls=evil.Mixin", "--worker-extension-cls"),
        ("--logits_processors", "--logits-processors"),
        ("--kv-transfer-config.kv_connector_module_path=evil", "--kv-transfer-config"),
        ("-cc.backend=evil.compile", "-cc"),
        ("--config", "--config"),
        ("--model=/etc", "--model"),
        ("--allowed-root=/", "--allowed-root"),
        ("--served-model-name", "--served-model-name"),
        ("-tp", "-tp"),
        ("--reasoning-parser-plugin=/models/hf-cache/p.py", "--reasoning-parser-plugin"),
        ("--reasoning-parser-p", "--reasoning-parser-plugin"),
    ],
)
def test_refused_extra_args(arg: str, flag: str) -> None:
    (message,) = violations(engine={"extraArgs": ["--max-num-seqs", "64", arg]})
    assert message == f"spec.engine.extraArgs[2]: {arg} is refused (it sets {flag})"


@pytest.mark.parametrize(
    "args",
    [
        ["--max-num-seqs", "64"],
        ["--enable-prefix-caching", "--no-trust-remote-code"],
        ["--kv-cache-dtype=fp8", "--seed", "-1"],
        ["-O3", "--model-impl", "vllm", "--tokenizer-mode=auto", "--block-size", "16"],
        ["--hf-overrides", '{"max_position_embeddings": 4096}'],
        ["--reasoning-parser", "deepseek_r1"],  # a flag of its own, though a prefix of --reasoning-parser-plugin
    ],
)
def test_allowed_extra_args(args: list[str]) -> None:
    assert violations(engine={"extraArgs": args}) == []


def test_values_are_not_flags() -> None:
    assert violations(engine={"extraArgs": ["--generation-config", "config", "--load-format", "model"]}) == []


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
            "--refused-env-patterns=PYTHON*, LD_*",
            "--refused-extra-args=--trust-remote-code",
        ]
    )
    assert policy == Policy(
        allowed_image_prefixes=("reg.io/a", "reg.io/b"),
        allowed_service_accounts=("models",),
        allowed_service_types=("ClusterIP", "LoadBalancer"),
        allowed_priority_classes=("inference",),
        refused_env_patterns=("PYTHON*", "LD_*"),
        refused_extra_args=("--trust-remote-code",),
    )


def test_an_empty_refused_list_refuses_nothing() -> None:
    policy = parse(["--refused-env-patterns=", "--refused-extra-args="])
    assert (policy.refused_env_patterns, policy.refused_extra_args) == ((), ())
    assert violations(policy, env=[{"name": "PYTHONPATH"}], engine={"extraArgs": ["--trust-remote-code"]}) == []


def test_chart_defaults_are_the_operator_defaults() -> None:
    values = yaml.safe_load(VALUES.read_text())["policy"]
    assert values["allowedImagePrefixes"] == list(Policy.allowed_image_prefixes)
    assert values["allowedServiceAccounts"] == list(Policy.allowed_service_accounts)
    assert values["allowedServiceTypes"] == list(Policy.allowed_service_types)
    assert values["allowedPriorityClasses"] == list(Policy.allowed_priority_classes)
    assert values["refusedEnvPatterns"] == list(REFUSED_ENV_PATTERNS)
    assert values["refusedExtraArgs"] == list(REFUSED_EXTRA_ARGS)
    assert values["admission"]["enabled"] is True
