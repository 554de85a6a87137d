"""The `InferenceModel` API (inference.vif.dev/v1alpha1): the one source of the CRD's schema.

`vif.operator.crd` turns these models into the CustomResourceDefinition in `crds/`; a test fails when the
file and the models differ. Field names are camelCase on the wire, snake_case in Python. Cross-field rules
are CEL (`x-kubernetes-validations`) so the API server refuses bad objects before the operator sees them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

GROUP = "inference.vif.dev"
VERSION = "v1alpha1"
KIND = "InferenceModel"
PLURAL = "inferencemodels"

Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|[KMGTPE]i?)?$", description="A Kubernetes quantity.")]
# No `..` anywhere (RE2 has no lookahead): every dot is followed by a non-dot, or ends the string.
NO_DOTDOT = r"^([^.]|\.[^.])*\.?$"
DNSLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNSSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=rf"^{DNS_LABEL}(\.{DNS_LABEL})*$")]
# The pods' termination grace period: a 5 s preStop wait, a 5 s drain and a 10 s exit margin, plus at least 5 s for
# in-flight requests (operator/builders/lifecycle.py); at most an hour.
MIN_GRACE_SECONDS = 25
DEFAULT_GRACE_SECONDS = 60
MAX_GRACE_SECONDS = 3600
MAX_ADAPTERS = 32  # bounds the CEL rules' cost over spec.adapters


def cel(rule: str, message: str, *more: tuple[str, str]) -> dict[str, Any]:
    """CEL validation rules for the CRD schema of the model they are attached to: a rule and its message, then
    more (rule, message) pairs (a schema has one `x-kubernetes-validations` list)."""
    rules = [(rule, message), *more]
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


def sub(model: type[BaseModel]) -> Any:
    """A nested object that defaults to all its own defaults; the CRD gets `default: {}` so the API server fills it."""
    return Field(default_factory=model, json_schema_extra={"default": {}})


class APIModel(BaseModel):
    """camelCase on the wire; unknown fields refused (the API server prunes them, strict clients get errors)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SecretKeyRef(APIModel):
    name: DNSLabel
    key: str = Field("token", min_length=1)


class ConfigMapKeyRef(APIModel):
    name: DNSLabel
    key: str = Field(
        min_length=1,
        pattern=r"^([-_a-zA-Z0-9]|\.[-_a-zA-Z0-9])+\.?$",
        description="A key of the ConfigMap (no `/`, no `..`).",
    )


class PVCSource(APIModel):
    claim_name: DNSLabel
    path: str = Field("", pattern=NO_DOTDOT, description="Folder of the model inside the volume (no `..`).")


class HuggingFaceSource(APIModel):
    id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="A Hugging Face repository id, org/name.")
    revision: str | None = Field(
        None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][-_A-Za-z0-9/]*(\.[-_A-Za-z0-9/]+)*$",
        description="A branch, tag or commit (default main); no `..`.",
    )
    token_secret: SecretKeyRef | None = Field(
        None, description="Secret holding HF_TOKEN for gated models (with `cache`, only the download sees it)."
    )


class S3ModelSource(APIModel):
    """A model under an S3 prefix, on AWS or any S3-compatible store; downloaded into `model.cache`."""

    uri: str = Field(
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/([^.]|\.[^.])*)?$",
        max_length=1024,
        description="s3://bucket/prefix: every object under the prefix (no `..`).",
    )
    endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        max_length=512,
        description="The store's URL (default AWS's for the region); path-style requests.",
    )
    region: str | None = Field(None, pattern=r"^[a-z0-9-]{1,32}$", description="Default us-east-1.")
    credentials_secret: DNSLabel | None = Field(
        None,
        description="A Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, optional),"
        " given to the download only; none for a public bucket.",
    )


class ModelCache(APIModel):
    """A volume the model is downloaded into once, by the first replica's init container (`vif-runtime fetch`),
    and that every replica mounts read-only: a new replica, a restart or a scale from zero loads from it. Either a
    claim of the model's own (`size`), or an existing claim that several models share (`claimName`): the cache is
    laid out by source and commit, so a second model of the same source and revision downloads nothing."""

    model_config = ConfigDict(json_schema_extra=cel(
        "has(self.size) != has(self.claimName)",
        "model.cache takes size (a claim of the model's own) or claimName (a claim models share), not both",
    ))  # fmt: skip

    size: Quantity | None = Field(
        None, description="A claim `<name>-model-cache` of this size, made and deleted with the model."
    )
    storage_class_name: DNSSubdomain | None = Field(None, description="That claim's class (default: the cluster's).")
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        "ReadWriteMany",
        description="That claim's access: ReadWriteMany lets replicas on every node share one download;"
        " ReadWriteOnce keeps the model's pods on the claim's node.",
    )
    claim_name: DNSLabel | None = Field(
        None, description="Instead: an existing claim of the namespace that models share; never deleted by vif."
    )


class ModelSource(APIModel):
    """Where the weights are: exactly one of a path in the image, a PVC, a Hugging Face id or an S3 prefix."""

    model_config = ConfigDict(json_schema_extra=cel(
        "[has(self.path), has(self.pvc), has(self.huggingFace), has(self.s3)].filter(x, x).size() == 1",
        "set exactly one of model.path, model.pvc, model.huggingFace and model.s3",
        ("!has(self.cache) || has(self.huggingFace) || has(self.s3)",
         "model.cache holds a download: only with model.huggingFace or model.s3"),
        ("!has(self.s3) || has(self.cache)", "model.s3 is downloaded into model.cache: set it"),
    ))  # fmt: skip

    path: str | None = Field(
        None, pattern=r"^/([^.]|\.[^.])*\.?$", description="An absolute path inside the runtime image (no `..`)."
    )
    pvc: PVCSource | None = None
    hugging_face: HuggingFaceSource | None = None
    s3: S3ModelSource | None = None
    cache: ModelCache | None = Field(
        None,
        description="Download a huggingFace or s3 model once into a shared volume (docs/models.md); without it"
        " each pod downloads a huggingFace model itself into an emptyDir.",
    )


class AdapterHuggingFace(APIModel):
    id: str = Field(
        pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*/[A-Za-z0-9][-_.A-Za-z0-9]*$",
        description="A Hugging Face repository id, org/name; downloaded at start (a gated one needs the model's"
        " huggingFace.tokenSecret).",
    )


class Adapter(APIModel):
    """A LoRA adapter served beside the model under its name: exactly one of a path, a PVC or a Hugging Face id."""

    model_config = ConfigDict(json_schema_extra=cel(
        "[has(self.path), has(self.pvc), has(self.huggingFace)].filter(x, x).size() == 1",
        "set exactly one of path, pvc and huggingFace in each of adapters",
    ))  # fmt: skip

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_][-_.:/A-Za-z0-9]*$",
        description="The name clients send as `model` to use the adapter.",
    )
    path: str | None = Field(
        None,
        pattern=r"^/([^.]|\.[^.])*\.?$",
        description="An absolute path in the pod (no `..`): in the image, or in the model's own PVC under /models/pvc.",
    )
    pvc: PVCSource | None = Field(None, description="A PVC (mounted read-only) and the adapter's folder in it.")
    hugging_face: AdapterHuggingFace | None = None


class EngineSettings(APIModel):
    max_model_len: int | None = Field(None, ge=16, description="Context length (prompt + completion).")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    extra_args: list[str] = Field(
        default_factory=list,
        description="More vLLM engine flags, passed verbatim: only those on the operator's allow-list.",
    )


class ServingSettings(APIModel):
    class_name: str = Field("OpenAIServingChat", min_length=1)
    chat_template: ConfigMapKeyRef | None = Field(None, description="A Jinja chat template from a ConfigMap.")
    response_role: str = Field("assistant", min_length=1)


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

    strategy: Literal["prefix-hash", "least-load", "round-robin", "none"] = Field(
        "prefix-hash", description="How the router picks a replica; none: no router, a plain Service."
    )
    replicas: int = Field(1, ge=1, description="Router replicas.")
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


class Condition(APIModel):
    type: Literal["Ready", "Progressing", "Degraded"]
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class DownloadStatus(APIModel):
    """A `model.cache` download as its replicas' `fetch` last reported it (operator/download_status.py)."""

    phase: Literal["Pending", "Downloading", "Verifying", "Ready", "Failed"]
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_per_second: int = Field(0, description="0 while unknown.")
    seconds_left: int = Field(0, description="0 while unknown.")
    message: str = Field("", description="Why it failed.")
    source: str = Field("", description="What was downloaded: ORG/NAME@REVISION.")
    summary: str = Field("", description="One line, as `kubectl get im` shows it.")


class InferenceModelStatus(APIModel):
    model_config = ConfigDict(extra="allow")  # kopf keeps its own bookkeeping under status

    observed_generation: int | None = None
    served_name: str | None = Field(None, description="The model name clients send.")
    replicas: int = 0
    ready_replicas: int = 0
    selector: str | None = Field(None, description="The pods' label selector, for the scale subresource.")
    endpoint: str | None = Field(None, description="In-cluster URL of the OpenAI-compatible API.")
    conditions: list[Condition] = Field(default_factory=list)
    download: DownloadStatus | None = Field(None, description="The download into `model.cache`, while and once it ran.")
