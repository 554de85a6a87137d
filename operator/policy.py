"""What an InferenceModel may ask for in a shared cluster: images, ServiceAccounts, Service types, priority
classes, env names, vLLM flags, placement, and the S3 stores its credentials may go to.

Creating an InferenceModel is the right to run a workload with the operator's rights (docs/security.md); this
policy bounds that workload, by allow-lists. The operator checks it before applying anything (`policy_violations`),
and the chart installs the same rules as a ValidatingAdmissionPolicy
(charts/vif-operator/templates/admission-policy.yaml), so both must read the same way: env patterns know only `*`
and `?`, and flags are compared by their long name (operator/engine_flags.py).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from vif.operator.engine_flags import ALLOWED_EXTRA_ARGS, REFUSED_EXTRA_ARGS
from vif.operator.spec import InferenceModelSpec

# Env names a model may set (`*` and `?` patterns): tuning of vLLM, the math libraries and the GPUs' collectives,
# and the locale. Nothing that moves where credentials go (HF_ENDPOINT, HF_HUB_*, AWS_*, *_PROXY, *_ENDPOINT*) or
# makes a library load code (LD_*, PYTHON*, CUDA_INJECTION64_PATH, NCCL_*_PLUGIN, OMP_TOOL_LIBRARIES, VLLM_PLUGINS).
ALLOWED_ENV_PATTERNS = (
    "VLLM_CPU_KVCACHE_SPACE",
    "VLLM_CPU_OMP_THREADS_BIND",
    "VLLM_CPU_NUM_OF_RESERVED_CPU",
    "VLLM_LOGGING_LEVEL",
    "VLLM_LOG_STATS_INTERVAL",
    "VLLM_NO_USAGE_STATS",
    "VLLM_DO_NOT_TRACK",
    "VLLM_ALLOW_LONG_MAX_MODEL_LEN",
    "VLLM_WORKER_MULTIPROC_METHOD",
    "VLLM_ENABLE_V1_MULTIPROCESSING",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "PYTORCH_CUDA_ALLOC_CONF",
    "NCCL_DEBUG",
    "NCCL_DEBUG_SUBSYS",
    "NCCL_IB_DISABLE",
    "NCCL_P2P_DISABLE",
    "NCCL_SHM_DISABLE",
    "TZ",
    "LANG",
    "LC_ALL",
    "TRANSFORMERS_VERBOSITY",
)

# Where a model's pods may land: taints they may tolerate and node labels they may select (nodeSelector and
# nodeAffinity), by key pattern. GPU pools and the well-known topology labels; never the control plane's.
ALLOWED_TOLERATION_KEYS = ("nvidia.com/gpu", "amd.com/gpu")
ALLOWED_NODE_LABEL_KEYS = (
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "nvidia.com/gpu.present",
    "nvidia.com/gpu.product",
    "nvidia.com/gpu.memory",
)
# Pod annotations a model may add, by key pattern: none that opt a pod out of a mesh or a security profile.
ALLOWED_POD_ANNOTATION_KEYS = ("cluster-autoscaler.kubernetes.io/safe-to-evict", "prometheus.io/*")

# A negative number is a value, not a flag (`--max-logprobs -1`).
NUMBER = re.compile(r"-[0-9.].*")


def image_repository(image: str) -> str:
    """The image without its digest or tag; a registry port (`reg:5000/x`) is not a tag."""
    base = image.split("@", 1)[0]
    colon = base.rfind(":")
    return base[:colon] if colon > base.rfind("/") else base


def glob_regex(pattern: str) -> str:
    """A pattern with `*` and `?` only, as a regular expression (the admission policy uses the same one)."""
    return re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")


@dataclass(frozen=True)
class Policy:
    """The operator's limits on what a model may run; the defaults are safe for a shared cluster.

    Empty `allowed_image_prefixes` means only the runtime image's own repository; empty
    `allowed_service_accounts`, `allowed_priority_classes` and `allowed_s3_endpoints` mean the field must stay
    unset.
    """

    allowed_image_prefixes: tuple[str, ...] = ()
    allowed_service_accounts: tuple[str, ...] = ()
    allowed_service_types: tuple[str, ...] = ("ClusterIP",)
    allowed_priority_classes: tuple[str, ...] = ()
    allowed_env_patterns: tuple[str, ...] = ALLOWED_ENV_PATTERNS
    allowed_extra_args: tuple[str, ...] = ALLOWED_EXTRA_ARGS
    allowed_toleration_keys: tuple[str, ...] = ALLOWED_TOLERATION_KEYS
    allowed_node_label_keys: tuple[str, ...] = ALLOWED_NODE_LABEL_KEYS
    allowed_pod_annotation_keys: tuple[str, ...] = ALLOWED_POD_ANNOTATION_KEYS
    allowed_s3_endpoints: tuple[str, ...] = ()

    def s3_endpoint_allowed(self, endpoint: str) -> bool:
        """The store a model's S3 credentials may be sent to: the URL or under it (`http://store:9000` allows
        `http://store:9000/x`, not `http://store:90001`). None allowed by default: only AWS's own (no endpoint)."""
        prefixes = (p.rstrip("/") for p in self.allowed_s3_endpoints)
        return any(endpoint.rstrip("/") == p or endpoint.startswith(p + "/") for p in prefixes)

    def image_allowed(self, image: str, runtime_image: str) -> bool:
        repo = image_repository(image)
        if not self.allowed_image_prefixes:
            return repo == image_repository(runtime_image)
        prefixes = (p.rstrip("/") for p in self.allowed_image_prefixes)
        return any(repo == p or repo.startswith(p + "/") for p in prefixes)

    def env_allowed(self, name: str) -> bool:
        return matches_any(self.allowed_env_patterns, name)

    def extra_arg_problem(self, arg: str) -> str | None:
        """Why `arg` is refused, or None. Values pass; a flag passes by its exact long name on the allow-list (`_`
        read as `-`, as vLLM reads it), so a prefix argparse would expand, a short alias and a config object's
        `.key` do not."""
        if not arg.startswith("-") or NUMBER.fullmatch(arg):
            return None
        flag = arg.split("=", 1)[0].replace("_", "-")
        stem = flag.split(".", 1)[0]
        if flag in self.allowed_extra_args:
            return None
        if stem in self.allowed_extra_args:
            return f"{stem} takes a plain value, not keys"
        positive = "--" + stem.removeprefix("--no-") if stem.startswith("--no-") else stem
        reason = next((why for why, flags in REFUSED_EXTRA_ARGS.items() if positive in flags), None)
        return f"{stem}: {reason}" if reason else f"{stem} is not on the allow-list of flags (docs/security.md)"


def matches_any(patterns: tuple[str, ...], name: str) -> bool:
    return any(re.fullmatch(glob_regex(p), name) for p in patterns)


def node_affinity_keys(affinity: dict[str, Any] | None) -> list[str]:
    """The node label and field keys a core/v1 Affinity's nodeAffinity selects on, required and preferred."""
    node = (affinity or {}).get("nodeAffinity") or {}
    terms = list((node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    terms += [p.get("preference") or {} for p in node.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    return [
        e.get("key", "") for t in terms for e in [*(t.get("matchExpressions") or []), *(t.get("matchFields") or [])]
    ]


def placement_violations(spec: InferenceModelSpec, policy: Policy) -> list[str]:
    """Tolerations, node selection and pod annotations off the policy's key lists."""
    found: list[str] = []
    tolerated, labels, annotations = (
        _allowed(policy.allowed_toleration_keys),
        _allowed(policy.allowed_node_label_keys),
        _allowed(policy.allowed_pod_annotation_keys),
    )
    for i, toleration in enumerate(spec.tolerations):
        if toleration.key is None:
            found.append(f"spec.tolerations[{i}]: a toleration without a key tolerates every taint")
        elif not matches_any(policy.allowed_toleration_keys, toleration.key):
            found.append(f"spec.tolerations[{i}].key: {toleration.key} is not an allowed taint key ({tolerated})")
    for key in spec.node_selector:
        if not matches_any(policy.allowed_node_label_keys, key):
            found.append(f"spec.nodeSelector: {key} is not an allowed node label key ({labels})")
    for key in node_affinity_keys(spec.affinity):
        if not matches_any(policy.allowed_node_label_keys, key):
            found.append(f"spec.affinity.nodeAffinity: {key} is not an allowed node label key ({labels})")
    for key in spec.pod_annotations:
        if not matches_any(policy.allowed_pod_annotation_keys, key):
            found.append(f"spec.podAnnotations: {key} is not an allowed annotation key ({annotations})")
    return found


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
        if not policy.env_allowed(env.name):
            found.append(f"spec.env[{i}].name: {env.name} is not an allowed env name (docs/security.md)")
    s3 = spec.model.s3
    if s3 is not None and s3.endpoint is not None and not policy.s3_endpoint_allowed(s3.endpoint):
        found.append(f"spec.model.s3.endpoint: {s3.endpoint} is not an allowed S3 endpoint "
                     f"({_allowed(policy.allowed_s3_endpoints)})")  # fmt: skip
    for i, arg in enumerate(spec.engine.extra_args):
        problem = policy.extra_arg_problem(arg)
        if problem is not None:
            found.append(f"spec.engine.extraArgs[{i}]: {arg} is refused ({problem})")
    return found + placement_violations(spec, policy)


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
        "--allowed-s3-endpoint",
        action="append",
        default=[],
        help="an S3-compatible store's URL spec.model.s3.endpoint may be (or be under; repeatable); default: none,"
        " only AWS's own",
    )
    group.add_argument(
        "--allowed-env-patterns",
        default=None,
        help=f"comma-separated env name patterns (* and ?) models may set; '' allows none; "
        f"default: {','.join(ALLOWED_ENV_PATTERNS)}",
    )
    group.add_argument(
        "--allowed-extra-args",
        default=None,
        help="comma-separated long flags models may pass in engine.extraArgs; '' allows none; "
        "default: vif.operator.engine_flags.ALLOWED_EXTRA_ARGS",
    )
    for flag, default, what in (
        ("--allowed-toleration-keys", ALLOWED_TOLERATION_KEYS, "taint keys tolerations may name"),
        ("--allowed-node-label-keys", ALLOWED_NODE_LABEL_KEYS, "node label keys nodeSelector and nodeAffinity may use"),
        ("--allowed-pod-annotation-keys", ALLOWED_POD_ANNOTATION_KEYS, "pod annotation keys podAnnotations may set"),
    ):
        group.add_argument(
            flag, default=None, help=f"comma-separated {what} (* and ?); '' allows none; default: {','.join(default)}"
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
        allowed_env_patterns=_comma_list(args.allowed_env_patterns, ALLOWED_ENV_PATTERNS),
        allowed_extra_args=_comma_list(args.allowed_extra_args, ALLOWED_EXTRA_ARGS),
        allowed_toleration_keys=_comma_list(args.allowed_toleration_keys, ALLOWED_TOLERATION_KEYS),
        allowed_node_label_keys=_comma_list(args.allowed_node_label_keys, ALLOWED_NODE_LABEL_KEYS),
        allowed_pod_annotation_keys=_comma_list(args.allowed_pod_annotation_keys, ALLOWED_POD_ANNOTATION_KEYS),
        allowed_s3_endpoints=tuple(args.allowed_s3_endpoint),
    )
