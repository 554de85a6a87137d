"""`vif-operator`: run the InferenceModel operator in one namespace, several, or all of them."""

from __future__ import annotations

import argparse
import logging
import os
import random

import kopf
import prometheus_client

from vif.operator.apply import Cluster
from vif.operator.kube_api import KubeAPI, load_kube_config
from vif.operator.policy import add_policy_arguments, policy_from_args
from vif.operator.settings import OperatorSettings
from vif.operator.watch_cache import ChildCache, InstalledCRDs

# OperatorSettings' strings: a flag each (named as the field), defaulted from the env var the chart sets.
SETTINGS_FLAGS = (
    ("--runtime-image", "VIF_RUNTIME_IMAGE", "the image of models without spec.image"),
    ("--prometheus-address", "VIF_PROMETHEUS_ADDRESS",
     "the Prometheus KEDA's triggers query for the models' load, e.g. http://prometheus-operated.monitoring:9090"),
    ("--monitoring-namespace", "VIF_MONITORING_NAMESPACE",
     "the namespace whose pods may scrape the replicas through their NetworkPolicy (e.g. monitoring)"),
    ("--hub-endpoint", "VIF_HUB_ENDPOINT",
     "the Hugging Face endpoint models' downloads use (a mirror; default huggingface.co)"),
    ("--operator-namespace", "VIF_OPERATOR_NAMESPACE",
     "the operator's namespace: replicas' NetworkPolicy lets it ask a download's progress (the chart sets it)"),
    ("--traces-endpoint", "VIF_TRACES_ENDPOINT",
     "the OTLP collector models with spec.tracing send spans to, e.g. http://jaeger-collector.tracing:4317"),
    ("--redis-url", "VIF_REDIS_URL",
     "the Redis where the routers of a model with spec.tenants share its limits, e.g. redis://redis.vif-system:6379/0"),
)  # fmt: skip


def setting_of(flag: str) -> str:
    """The OperatorSettings field a flag of SETTINGS_FLAGS sets: `--hub-endpoint` -> `hub_endpoint`."""
    return flag.removeprefix("--").replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vif-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    for flag, env, what in SETTINGS_FLAGS:
        default = os.environ.get(env, getattr(OperatorSettings, setting_of(flag)))
        parser.add_argument(flag, default=default, help=f"{what} (default ${env})")
    parser.add_argument(
        "--network-policy",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("VIF_NETWORK_POLICY", "") == "true",
        help="give models a NetworkPolicy unless their spec.networkPolicy.mode says otherwise ($VIF_NETWORK_POLICY)",
    )
    parser.add_argument("--health-port", type=int, default=8080, help="liveness endpoint: GET /healthz")
    parser.add_argument(
        "--peering", default=None, help="kopf peering name, so replicas do not fight (needs crds/kopf-peering.yaml)"
    )
    parser.add_argument(
        "--priority", type=int, default=0, help="with --peering: the highest priority works, others wait"
    )
    parser.add_argument("--metrics-port", type=int, default=8081, help="Prometheus metrics: GET /metrics; 0: off")
    parser.add_argument(
        "--workers", type=int, default=16, help="threads reconciling models at once (each mostly waits on the API)"
    )
    parser.add_argument("--verbose", action="store_true")
    add_policy_arguments(parser)
    return parser


def settings_from(args: argparse.Namespace) -> OperatorSettings:
    named = {setting_of(flag) for flag, _, _ in SETTINGS_FLAGS} | {"network_policy"}
    return OperatorSettings(policy=policy_from_args(args), **{name: getattr(args, name) for name in named})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.peering is not None and args.priority == 0:
        # Replicas of equal priority all pause (kopf's rule), so each takes a random one: one of them works.
        args.priority = random.randint(1, 2**31)
    kopf.configure(verbose=args.verbose)
    if not args.verbose:  # kopf logs every handler's success; with thousands of models that is most of the CPU
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port)
    load_kube_config()
    import vif.operator.handlers  # noqa: F401  (registers the handlers with kopf)

    # kopf's handler threads (the models' own changes) and the converge pool (their children's) each have --workers
    api = KubeAPI(pool_size=2 * args.workers)
    cluster = Cluster(
        api, ChildCache(), InstalledCRDs(lambda name: api.get("CustomResourceDefinition", None, name) is not None)
    )
    settings = settings_from(args)
    memo = kopf.Memo(cluster=cluster, settings=settings, workers=args.workers)  # handlers.configure adds the rest
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority,
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
        memo=memo,
    )
    return 0
