"""What the operator brings to every model, from its command line (`vif-operator`, operator/cli.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vif.operator.policy import Policy


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator brings to every model: the default runtime image, the policy models must meet, the
    Prometheus KEDA's triggers query (empty: none known), whether models get a NetworkPolicy unless they say, the
    namespace whose pods scrape the replicas (empty: none let through), the Hugging Face endpoint models'
    downloads use (empty: huggingface.co), the operator's own namespace, let through to ask a download's
    progress (empty: not known), the OTLP collector models with `spec.tracing` send spans to (empty: none), and the
    Redis where the routers of a model with `spec.tenants` share its limits (empty: each router enforces its share)."""

    runtime_image: str = "vif-runtime:0.1.0"
    policy: Policy = field(default_factory=Policy)
    prometheus_address: str = ""
    network_policy: bool = False
    monitoring_namespace: str = ""
    hub_endpoint: str = ""
    operator_namespace: str = ""
    traces_endpoint: str = ""
    redis_url: str = ""
