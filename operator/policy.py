"""What an InferenceModel may ask for in a shared cluster: images, ServiceAccounts, Service types, priority
classes, env names and vLLM flags.

Creating an InferenceModel is the right to run a workload with the operator's rights (docs/security.md); this
policy bounds that workload. The operator checks it before applying anything (`policy_violations`), and the
chart installs the same rules as a ValidatingAdmissionPolicy (charts/vif-operator/templates/admission-policy.yaml),
so both must read the same way: env patterns know only `*` and `?`, and flags are compared by prefix.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from vif.operator.spec import InferenceModelSpec

# Names that make the runtime load code, libraries or config from a path, reach outside the pod's GPUs, or
# replace vif's own settings (VIF_API_KEYS comes from spec.apiKeySecret).
REFUSED_ENV_PATTERNS = (
    "PYTHON*",
    "LD_*",
    "PATH",
    "BASH_ENV",
    "GCONV_PATH",
    "OPENSSL_*",
    "NVIDIA_*",
    "TORCHINDUCTOR_*",
    "TRITON_*",
    "VIF_*",
    "VLLM_PLUGINS",
    "VLLM_*_PATH",
    "VLLM_CACHE_ROOT",
    "VLLM_CONFIG_ROOT",
    "VLLM_ALLOW_INSECURE_SERIALIZATION",
    # where the engine's caches (compiled kernels, pickles) live: the operator points them into the pod's own
    # emptyDir; pointed at a volume the user fills, they would load the user's code
    "HOME",
    "XDG_*",
    "NUMBA_*",
    "HF_HOME",
)

# vLLM flags that import code by name or from a file, expose the container's files, or replace what the
# operator sets (vif's own flags, and engine settings that have a spec field).
REFUSED_EXTRA_ARGS = (
    # code
    "--trust-remote-code",
    "--worker-cls",
    "--worker-extension-cls",
    "--scheduler-cls",
    "--logits-processors",
    "--distributed-executor-backend",
    "--model-class-overrides",
    "--reasoning-parser-plugin",
    "--io-processor-plugin",
    "--compilation-config",
    "-cc",
    "--logging-config",
    "--log-config-file",
    "--kv-transfer-config",
    "--ec-transfer-config",
    "--kv-events-config",
    "--allowed-local-media-path",
    # set by the operator
    "--config",
    "--model",
    "--model-name",
    "--served-model-name",
    "--tokenizer",
    "--allowed-root",
    "--host",
    "--port",
    "--max-model-len",
    "--dtype",
    "--tensor-parallel-size",
    "-tp",
    "--gpu-memory-utilization",
    "--revision",
    "--drain-seconds",  # from terminationGracePeriodSeconds
    "--shutdown-timeout",
)

# vLLM flags that are a prefix of a refused one (`--reasoning-parser-plugin`) but are flags of their own:
# argparse takes an exact match before expanding a prefix, so these are not refused for being a prefix.
EXACT_FLAGS = ("--reasoning-parser",)


def image_repository(image: str) -> str:
    """The image without its digest or tag; a registry port (`reg:5000/x`) is not a tag."""
    base = image.split("@", 1)[0]
    colon = base.rfind(":")
    return base[:colon] if colon > base.rfind("/") else base


def flag_name(arg: str) -> str:
    """How vLLM reads a flag: `--Trust_Remote_Code=1` and `--kv-transfer-config.x` name their flag's stem."""
    return arg.split("=", 1)[0].split(".", 1)[0].replace("_", "-").lower()


def glob_regex(pattern: str) -> str:
    """A pattern with `*` and `?` only, as a regular expression (the admission policy uses the same one)."""
    return re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")


@dataclass(frozen=True)
class Policy:
    """The operator's limits on what a model may run; the defaults are safe for a shared cluster.

    Empty `allowed_image_prefixes` means only the runtime image's own repository; empty
    `allowed_service_accounts` and `allowed_priority_classes` mean the field must stay unset.
    """

    allowed_image_prefixes: tuple[str, ...] = ()
    allowed_service_accounts: tuple[str, ...] = ()
    allowed_service_types: tuple[str, ...] = ("ClusterIP",)
    allowed_priority_classes: tuple[str, ...] = ()
    refused_env_patterns: tuple[str, ...] = REFUSED_ENV_PATTERNS
    refused_extra_args: tuple[str, ...] = REFUSED_EXTRA_ARGS

    def image_allowed(self, image: str, runtime_image: str) -> bool:
        repo = image_repository(image)
        if not self.allowed_image_prefixes:
            return repo == image_repository(runtime_image)
        prefixes = (p.rstrip("/") for p in self.allowed_image_prefixes)
        return any(repo == p or repo.startswith(p + "/") for p in prefixes)

    def refused_env_pattern(self, name: str) -> str | None:
        return next((p for p in self.refused_env_patterns if re.fullmatch(glob_regex(p), name)), None)

    def refused_flag(self, arg: str) -> str | None:
        """The refused flag `arg` names. A prefix counts: argparse expands `--trust-remote` to the full flag."""
        if not arg.startswith("-"):
            return None  # a value
        name = flag_name(arg)
        exact = [f for f in self.refused_extra_args if flag_name(f) == name]
        expanded = [f for f in self.refused_extra_args if flag_name(f).startswith(name) and name not in EXACT_FLAGS]
        return next(iter(exact + expanded), None)


def _allowed(values: tuple[str, ...]) -> str:
    return f"allowed: {', '.join(values)}" if values else "none allowed: leave it unset"


def policy_violations(spec: InferenceModelSpec, policy: Policy, runtime_image: str) -> list[str]:
    """One message per field the policy refuses, naming the field and the value; empty when all is allowed."""
    found: list[str] = []
    if spec.image and not policy.image_allowed(spec.image, runtime_image):
        prefixes = policy.allowed_image_prefixes or (image_repository(runtime_image),)
        found.append(f"spec.image: {spec.image} is not under an allowed prefix ({', '.join(prefixes)})")
    account = spec.service_account_name
    if account is not None and account not in policy.allowed_service_accounts:
        found.append(
            f"spec.serviceAccountName: {account} is not an allowed ServiceAccount "
            f"({_allowed(policy.allowed_service_accounts)})"
        )
    if spec.service.type not in policy.allowed_service_types:
        found.append(
            f"spec.service.type: {spec.service.type} is not an allowed Service type "
            f"(allowed: {', '.join(policy.allowed_service_types)})"
        )
    priority = spec.priority_class_name
    if priority is not None and priority not in policy.allowed_priority_classes:
        found.append(
            f"spec.priorityClassName: {priority} is not an allowed priority class "
            f"({_allowed(policy.allowed_priority_classes)})"
        )
    for i, env in enumerate(spec.env):
        pattern = policy.refused_env_pattern(env.name)
        if pattern is not None:
            found.append(f"spec.env[{i}].name: {env.name} is refused (matches {pattern})")
    for i, arg in enumerate(spec.engine.extra_args):
        flag = policy.refused_flag(arg)
        if flag is not None:
            found.append(f"spec.engine.extraArgs[{i}]: {arg} is refused (it sets {flag})")
    return found


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The policy's flags; a repeatable flag lists what is allowed, a comma list replaces a refused default."""
    group = parser.add_argument_group("policy", "what an InferenceModel may ask for (docs/security.md)")
    group.add_argument(
        "--allowed-image-prefix",
        action="append",
        default=[],
        help="a registry path images may be under (repeatable); default: only the runtime image's repository",
    )
    group.add_argument(
        "--allowed-service-account",
        action="append",
        default=[],
        help="a ServiceAccount spec.serviceAccountName may name (repeatable); default: none",
    )
    group.add_argument(
        "--allowed-service-type",
        action="append",
        choices=["ClusterIP", "NodePort", "LoadBalancer"],
        default=[],
        help="a Service type models may use (repeatable); default: ClusterIP",
    )
    group.add_argument(
        "--allowed-priority-class",
        action="append",
        default=[],
        help="a PriorityClass spec.priorityClassName may name (repeatable); default: none",
    )
    group.add_argument(
        "--refused-env-patterns",
        default=None,
        help=f"comma-separated env name patterns (* and ?) models may not set; '' refuses none; "
        f"default: {','.join(REFUSED_ENV_PATTERNS)}",
    )
    group.add_argument(
        "--refused-extra-args",
        default=None,
        help=f"comma-separated vLLM flags models may not pass in engine.extraArgs; '' refuses none; "
        f"default: {','.join(REFUSED_EXTRA_ARGS)}",
    )


def _comma_list(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    return tuple(item.strip() for item in value.split(",") if item.strip())


def policy_from_args(args: argparse.Namespace) -> Policy:
    """The Policy the parsed flags describe (see `add_policy_arguments`)."""
    return Policy(
        allowed_image_prefixes=tuple(args.allowed_image_prefix),
        allowed_service_accounts=tuple(args.allowed_service_account),
        allowed_service_types=tuple(args.allowed_service_type) or Policy.allowed_service_types,
        allowed_priority_classes=tuple(args.allowed_priority_class),
        refused_env_patterns=_comma_list(args.refused_env_patterns, REFUSED_ENV_PATTERNS),
        refused_extra_args=_comma_list(args.refused_extra_args, REFUSED_EXTRA_ARGS),
    )
