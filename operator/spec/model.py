"""`InferenceModelSpec`: what a user asks for, from the engine's settings to routing, scaling and placement."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, field_validator

from vif.operator.spec.schema import (
    DEFAULT_GRACE_SECONDS,
    MAX_ADAPTERS,
    MAX_GRACE_SECONDS,
    MAX_TENANTS,
    MIN_GRACE_SECONDS,
    APIModel,
    ConfigMapKeyRef,
    DNSLabel,
    Quantity,
    SecretKeyRef,
    cel,
    sub,
)
from vif.operator.spec.sources import Adapter, ModelSource


class EngineSettings(APIModel):
    max_model_len: int | None = Field(None, ge=16, description="Context length (prompt + completion).")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    extra_args: list[str] = Field(
        default_factory=list,
        description="More vLLM engine flags, passed verbatim: only those on the operator's allow-list.",
    )


class ResponseCache(APIModel):
    """Whole answers to deterministic requests (temperature 0 or a seed), kept in each replica's memory for exact
    repeats (docs/response-cache.md)."""

    max_entries: int = Field(10_000, ge=1, le=10_000_000)
    max_mebibytes: int = Field(
        64, ge=1, le=65_536, description="The kept answers' size together, in MiB: it counts in the replica's memory."
    )
    ttl_seconds: int = Field(600, ge=1, le=7 * 24 * 3600, description="How long an answer is kept.")


class ServingSettings(APIModel):
    """How requests are served. All but className reload in the running replicas, without a restart: the chat
    template's content (the ConfigMap named here), the role, the log level and the response cache
    (docs/live-config.md)."""

    class_name: str = Field("OpenAIServingChat", min_length=1)
    chat_template: ConfigMapKeyRef | None = Field(
        None, description="A Jinja chat template from a ConfigMap; a change to its content reloads live."
    )
    response_role: str = Field("assistant", min_length=1)
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="The runtime's log level.")
    response_cache: ResponseCache | None = Field(
        None,
        description="Exact repeats of deterministic requests (temperature 0 or a seed) answered from each replica's"
        " memory; off unless set (docs/response-cache.md).",
    )


class Resources(APIModel):
    gpu: int = Field(0, ge=0, le=64, description="GPUs per replica, requested as nvidia.com/gpu.")
    cpu: Quantity | None = None
    memory: Quantity | None = None


AutoscalingMetric = Literal["queue", "kv-cache", "cpu"]
# Metric names a released CRD accepted, read as their successors (`waiting-requests`: v1alpha1's first queue signal).
DEPRECATED_METRICS = {"waiting-requests": "queue"}
DEFAULT_TARGETS = {"queue": 5, "kv-cache": 80, "cpu": 70}  # when autoscaling.target is unset


class Autoscaling(APIModel):
    """Replicas between min and max on a load signal: KEDA's where installed, else an HPA (docs/autoscaling.md)."""

    model_config = ConfigDict(json_schema_extra=cel(
        "self.minReplicas <= self.maxReplicas", "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        (
            "self.minReplicas > 0 || self.metric != 'cpu'",
            "autoscaling.minReplicas 0 needs metric queue or kv-cache: CPU use cannot wake a model without replicas",
        ),
        (
            "!has(self.target) || self.metric != 'kv-cache' || self.target <= 100",
            "autoscaling.target is a percentage of the KV cache with metric kv-cache: at most 100",
        ),
    ))  # fmt: skip

    min_replicas: int = Field(1, ge=0, description="0: no replica while idle (needs KEDA; docs/autoscaling.md).")
    max_replicas: int = Field(3, ge=1)
    metric: AutoscalingMetric = Field(
        "queue",
        description="queue: vLLM's waiting + running requests per replica; kv-cache: vLLM's KV-cache usage"
        " (percent, needs KEDA); cpu: CPU utilisation percent of the request. waiting-requests: deprecated, read"
        " as queue.",
        json_schema_extra={"enum": [*get_args(AutoscalingMetric), *DEPRECATED_METRICS]},
    )
    target: int | None = Field(
        None,
        ge=1,
        description="Per replica: requests (queue), percent of the KV cache (kv-cache, at most 100) or CPU"
        " utilisation percent (cpu); default 5, 80 and 70.",
    )
    scale_down_delay_seconds: int = Field(
        300,
        ge=0,
        le=3600,  # the longest scale-down stabilisation window an HPA accepts
        description="How long the load must stay low before replicas are removed (the HPA's scale-down"
        " stabilisation window; with KEDA also the wait before the last replica goes).",
    )

    @field_validator("metric", mode="before")
    @classmethod
    def _renamed_metric(cls, value: Any) -> Any:
        return DEPRECATED_METRICS.get(value, value) if isinstance(value, str) else value

    @property
    def target_value(self) -> int:
        """`target`, or the metric's default."""
        return self.target if self.target is not None else DEFAULT_TARGETS[self.metric]


class Monitoring(APIModel):
    service_monitor: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: create a ServiceMonitor when the Prometheus Operator's CRD is installed."
    )
    interval: str = Field("30s", pattern=r"^[0-9]+(ms|s|m|h)$")


class InferencePoolSettings(APIModel):
    """An InferencePool (Gateway API Inference Extension) selecting the model's pods, for clusters whose gateway
    routes through one; its endpoint picker (EPP) is installed separately (docs/router.md)."""

    mode: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: create the InferencePool when its CRD (inference.networking.k8s.io) is installed."
    )
    endpoint_picker: DNSLabel | None = Field(
        None, description="The endpoint picker's Service; default: <metadata.name>-epp, as the EPP chart names it."
    )
    endpoint_picker_port: int = Field(9002, ge=1, le=65535, description="The endpoint picker's gRPC port.")


class NetworkPolicySettings(APIModel):
    """A NetworkPolicy on the replicas (docs/security.md): they take traffic only from the model's router, from the
    namespaces and pods listed here, and from the operator's monitoring namespace. The cluster's network plugin
    enforces it; without one (or with one that ignores NetworkPolicy) it changes nothing."""

    mode: Literal["auto", "on"] = Field(
        "auto",
        description="auto: the operator's default (the chart's networkPolicy.enabled); on: always. A model can add"
        " the fence but not take down one the cluster's operator puts up.",
    )
    from_namespaces: list[DNSLabel] = Field(
        default_factory=list, description="Namespaces whose pods may reach the replicas directly, past the router."
    )
    from_pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Pods of the model's namespace with these labels may reach the replicas directly (with routing"
        " none, the model's clients).",
    )


class ServiceSettings(APIModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = Field(80, ge=1, le=65535)


class Routing(APIModel):
    """A vif-router in front of the model's replicas (docs/router.md); `none`: the Service selects the replicas."""

    model_config = ConfigDict(json_schema_extra=cel(
        "!has(self.sessionAffinity) || !self.sessionAffinity || !has(self.strategy) || self.strategy == 'prefix-hash'",
        "routing.sessionAffinity needs routing.strategy prefix-hash: the other strategies route by load alone",
    ))  # fmt: skip

    strategy: Literal["prefix-hash", "kv-aware", "least-load", "round-robin", "none"] = Field(
        "prefix-hash",
        description="How the router picks a replica; kv-aware: as prefix-hash, corrected by the engines' own KV"
        " cache events (each replica publishes them on port 5557); none: no router, a plain Service.",
    )
    replicas: int = Field(1, ge=1, description="Router replicas.")
    session_affinity: bool = Field(
        False,
        description="A request's X-Session-Id header, else its `user` field, picks its replica (within the load"
        " bound) instead of its prompt: a client's session stays on one replica.",
    )
    max_wait_seconds: int = Field(
        120,
        ge=1,
        le=3600,
        description="How long the router holds a request while no replica is ready (scaling from zero, all"
        " replicas starting), then 503 with Retry-After: longer than a replica's cold start.",
    )
    first_byte_timeout_seconds: int = Field(
        300,
        ge=1,
        le=3600,
        description="How long a replica may take to start its answer (a stream's first token, a whole answer's"
        " end) before the request goes to another replica: longer than the longest whole answer.",
    )
    idle_timeout_seconds: int = Field(
        60,
        ge=1,
        le=3600,
        description="How long a started answer may go silent before the router ends it with an error.",
    )
    max_in_flight_per_replica: int = Field(
        0,
        ge=0,
        le=4096,
        description="Requests the model's routers send one replica at once (each router its share of it, rounded"
        " up); the rest wait at the routers and leave fairly across tenants, by the tokens each has been served"
        " (docs/tenants.md). Set it to the engine's max_num_seqs. 0: the replicas queue them, first come first"
        " served.",
    )


class TracingSettings(APIModel):
    """Spans of the model's router, replicas and engine, to the operator's OTLP collector (docs/tracing.md)."""

    sample_ratio: float = Field(
        0.1, ge=0, le=1, description="The share of requests traced (a client's sampled traceparent is always kept)."
    )
    logs: bool = Field(
        False, description="The runtime's and the router's log lines to the same collector too (they stay on stdout)."
    )


class TenantLimits(APIModel):
    """Limits for the model as a whole, however many router replicas serve it (docs/tenants.md); unset: none."""

    requests_per_minute: int | None = Field(None, ge=1, description="Requests admitted per minute.")
    tokens_per_minute: int | None = Field(
        None, ge=1, description="Prompt and completion tokens per minute, charged as the engine produces them."
    )
    concurrent_requests: int | None = Field(None, ge=1, description="Requests running at once.")


class Tenant(TenantLimits):
    """One application's API key and its limits; a limit left unset comes from tenants.defaults."""

    name: DNSLabel = Field(description="Who the key belongs to: a metrics label and a log field, never the key.")
    key_secret: SecretKeyRef = Field(description="The Secret and key holding this tenant's API key.")


class Tenants(APIModel):
    """Named API keys with limits, enforced by the router (docs/tenants.md). A Redis holds the limits for every
    router replica: the model's own (`redisUrlSecret`) or else the operator's (chart value tenants.redisUrl);
    without one, each router enforces its share."""

    keys: list[Tenant] = Field(
        min_length=1,
        max_length=MAX_TENANTS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    defaults: TenantLimits = Field(
        default_factory=TenantLimits, description="Limits of a tenant that sets none, and of apiKeySecret's keys."
    )
    when_redis_down: Literal["open", "closed"] = Field(
        "open",
        description="While Redis cannot be reached: open, each router enforces its share of the limits; closed,"
        " requests are refused with 503.",
    )
    redis_url_secret: SecretKeyRef | None = Field(
        None,
        description="A Secret in the model's namespace whose key holds the URL of this model's own Redis, password"
        " included (redis://:PASSWORD@HOST:6379/0, or rediss:// for TLS), in place of the operator's. The routers"
        " read it from their environment: it never appears in a Deployment's arguments.",
    )


class EnvVar(APIModel):
    name: str = Field(min_length=1, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str = ""


class Toleration(APIModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class InferenceModelSpec(APIModel):
    # Rules across engine and resources, so on the spec; has(): they hold with or without the defaults filled.
    model_config = ConfigDict(json_schema_extra=cel(
        "!has(self.engine) || !has(self.resources) || !has(self.resources.gpu) || self.resources.gpu == 0"
        " || !has(self.engine.tensorParallelSize) || self.engine.tensorParallelSize <= self.resources.gpu",
        "engine.tensorParallelSize must not exceed resources.gpu: each tensor-parallel worker needs a GPU",
        (
            "!has(self.tenants) || !has(self.routing) || !has(self.routing.strategy)"
            " || self.routing.strategy != 'none'",
            "tenants need the router (routing.strategy other than none): it enforces their limits",
        ),
        (
            "!has(self.tenants) || !has(self.apiKeySecret) || self.tenants.keys.all(t, t.name != 'default')",
            "tenants.keys: the name default is apiKeySecret's keys' tenant",
        ),
        (
            "!has(self.engine) || !has(self.engine.gpuMemoryUtilization)"
            " || (has(self.resources) && has(self.resources.gpu) && self.resources.gpu > 0)",
            "engine.gpuMemoryUtilization is set but resources.gpu is 0 (a CPU model)",
        ),
    ))  # fmt: skip

    model: ModelSource
    served_name: DNSLabel | None = Field(None, description="The name clients send as `model`; default: metadata.name.")
    adapters: list[Adapter] = Field(
        default_factory=list,
        max_length=MAX_ADAPTERS,
        description="LoRA adapters served beside the model, each under its own name (vLLM's enable_lora; set"
        " max_loras, max_lora_rank and the like through engine.extraArgs).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    image: str | None = Field(None, description="The runtime image; default: the operator's setting.")
    engine: EngineSettings = sub(EngineSettings)
    serving: ServingSettings = sub(ServingSettings)
    resources: Resources = sub(Resources)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: dict[str, Any] | None = Field(None, description="A core/v1 Affinity, passed to the pod as is.")
    replicas: int = Field(1, ge=0, description="Replicas when autoscaling is off (kubectl scale sets it).")
    autoscaling: Autoscaling | None = None
    monitoring: Monitoring = sub(Monitoring)
    inference_pool: InferencePoolSettings = sub(InferencePoolSettings)
    api_key_secret: SecretKeyRef | None = Field(None, description="Secret whose key holds the accepted API keys.")
    tenants: Tenants | None = Field(
        None, description="Named API keys, each with its own limits and usage, enforced by the router."
    )
    tracing: TracingSettings | None = Field(
        None,
        description="OpenTelemetry traces to the operator's collector (the chart's tracing.endpoint); off if unset",
    )
    env: list[EnvVar] = Field(
        default_factory=list, description="Environment of the runtime; only names on the operator's allow-list."
    )
    service: ServiceSettings = sub(ServiceSettings)
    network_policy: NetworkPolicySettings = sub(NetworkPolicySettings)
    routing: Routing = Field(
        default_factory=Routing,
        json_schema_extra={"default": {}},
        description="A router in front of the replicas (default prefix-hash); strategy none: the Service selects the"
        " pods.",
    )
    service_account_name: DNSLabel | None = None
    image_pull_secrets: list[DNSLabel] = Field(default_factory=list, description="Secrets for a private registry.")
    priority_class_name: str | None = None
    termination_grace_period_seconds: int = Field(
        DEFAULT_GRACE_SECONDS,
        ge=MIN_GRACE_SECONDS,
        le=MAX_GRACE_SECONDS,
        description="Seconds a stopping pod has: 5 wait for the endpoints to drop it, 5 drain, then in-flight"
        " requests get the rest but 10 (the runtime's --shutdown-timeout).",
    )
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Extra annotations on the pods.")
