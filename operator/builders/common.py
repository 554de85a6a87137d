"""Names, labels and settings shared by the builders."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from vif.operator.names import child_labels, owner_reference, selector
from vif.operator.policy import Policy
from vif.operator.spec import InferenceModelSpec

RUNTIME_PORT = 8000
CONFIG_DIR = "/etc/vif"
CONFIG_FILE = f"{CONFIG_DIR}/model_config.json"
TEMPLATE_DIR = "/etc/vif-chat-template"  # not under CONFIG_DIR: a mount inside a read-only ConfigMap mount fails
PVC_MOUNT = "/models/pvc"
ADAPTER_PVC_DIR = "/models/adapters"  # PVCs of LoRA adapters, each at <dir>/<claim name>
HF_CACHE = "/models/hf-cache"


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator brings to every model: the default runtime image, the policy models must meet, the
    Prometheus KEDA's triggers query (empty: none known), whether models get a NetworkPolicy unless they say, the
    namespace whose pods scrape the replicas (empty: none let through), the Hugging Face endpoint models'
    downloads use (empty: huggingface.co), and the operator's own namespace, let through to ask a download's
    progress (empty: not known)."""

    runtime_image: str = "vif-runtime:0.1.0"
    policy: Policy = field(default_factory=Policy)
    prometheus_address: str = ""
    network_policy: bool = False
    monitoring_namespace: str = ""
    hub_endpoint: str = ""
    operator_namespace: str = ""


@dataclass(frozen=True)
class ModelRef:
    """The InferenceModel being reconciled: its identity and parsed spec."""

    name: str
    namespace: str
    uid: str
    spec: InferenceModelSpec

    @property
    def served_name(self) -> str:
        return self.spec.served_name or self.name

    def selector(self) -> dict[str, str]:
        return selector(self.name)

    def labels(self) -> dict[str, str]:
        return child_labels(self.name)

    def metadata(self, name: str | None = None) -> dict[str, Any]:
        """Metadata for a child: labels and the owner reference that makes deleting the model delete it."""
        return {
            "name": name or self.name,
            "namespace": self.namespace,
            "labels": self.labels(),
            "ownerReferences": [owner_reference(self.name, self.uid)],
        }

    def endpoint(self) -> str:
        return f"http://{self.name}.{self.namespace}.svc.cluster.local:{self.spec.service.port}/v1"


def shared_pod_settings(ref: ModelRef) -> dict[str, Any]:
    """What every pod of a model takes from its spec, the runtime's and the router's alike: image pull secrets,
    tolerations (to share the model's tainted node pool) and priority class."""
    settings: dict[str, Any] = {}
    if ref.spec.image_pull_secrets:
        settings["imagePullSecrets"] = [{"name": name} for name in ref.spec.image_pull_secrets]
    if ref.spec.tolerations:
        settings["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in ref.spec.tolerations]
    if ref.spec.priority_class_name:
        settings["priorityClassName"] = ref.spec.priority_class_name
    return settings


def content_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
