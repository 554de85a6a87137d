"""Every kind the operator reads or writes, in one table: its apiVersion, its plural, whether models own it, and the
CRD it needs when it is not built in.

The API client finds each kind's URL here (it needs no discovery), the builders take a manifest's apiVersion and
kind from here, the handlers watch the owned kinds, reconcile checks the optional CRDs, and
tests/charts/test_chart.py checks that the chart's RBAC grants exactly what this table uses. Adding a kind is one
row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from vif.operator.names import API_VERSION
from vif.operator.spec import KIND, PLURAL


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API (`/api/v1` for the core group, `/apis/<group>/<version>` otherwise), whether
    models own objects of it (`owned`: the operator creates, watches and deletes them), and whether its CRD may be
    missing from a cluster (`optional`: the operator asks before it makes one)."""

    name: str
    api_version: str
    plural: str
    namespaced: bool = True
    owned: bool = False
    optional: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def crd(self) -> str:
        """The CustomResourceDefinition's name (`<plural>.<group>`)."""
        return f"{self.plural}.{self.group}"

    def path(self, namespace: str | None, name: str | None = None) -> str:
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        scope = f"/namespaces/{quote(namespace)}" if self.namespaced and namespace else ""
        return f"{root}{scope}/{self.plural}" + (f"/{quote(name)}" if name else "")

    def manifest(self, metadata: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """An object of this kind: apiVersion, kind, metadata, then `fields` (spec, data, rules, ...)."""
        return {"apiVersion": self.api_version, "kind": self.name, "metadata": metadata, **fields}


SERVICE_ACCOUNT = Kind("ServiceAccount", "v1", "serviceaccounts", owned=True)
CONFIG_MAP = Kind("ConfigMap", "v1", "configmaps", owned=True)
DEPLOYMENT = Kind("Deployment", "apps/v1", "deployments", owned=True)
SERVICE = Kind("Service", "v1", "services", owned=True)
HPA = Kind("HorizontalPodAutoscaler", "autoscaling/v2", "horizontalpodautoscalers", owned=True)
PDB = Kind("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", owned=True)
SERVICE_MONITOR = Kind("ServiceMonitor", "monitoring.coreos.com/v1", "servicemonitors", owned=True, optional=True)
SCALED_OBJECT = Kind("ScaledObject", "keda.sh/v1alpha1", "scaledobjects", owned=True, optional=True)
INFERENCE_POOL = Kind("InferencePool", "inference.networking.k8s.io/v1", "inferencepools", owned=True, optional=True)
ROLE = Kind("Role", "rbac.authorization.k8s.io/v1", "roles", owned=True)
ROLE_BINDING = Kind("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings", owned=True)
NETWORK_POLICY = Kind("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", owned=True)
PVC = Kind("PersistentVolumeClaim", "v1", "persistentvolumeclaims", owned=True)
POD = Kind("Pod", "v1", "pods")  # read only: a download's progress (downloads.py)
INFERENCE_MODEL = Kind(KIND, API_VERSION, PLURAL)
CRD = Kind("CustomResourceDefinition", "apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False)

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        SERVICE_ACCOUNT, CONFIG_MAP, DEPLOYMENT, SERVICE, HPA, PDB, SERVICE_MONITOR, SCALED_OBJECT, INFERENCE_POOL,
        ROLE, ROLE_BINDING, NETWORK_POLICY, PVC, POD, INFERENCE_MODEL, CRD,
    )
}  # fmt: skip
OWNED_KINDS = tuple(kind.name for kind in KINDS.values() if kind.owned)
"""Every kind a model may own: watched by the handlers, listed when a model's children are counted."""
OPTIONAL_CRDS = tuple(kind.crd for kind in KINDS.values() if kind.optional)
"""The CRDs whose arrival or removal changes what models own (a ScaledObject for an HPA, a ServiceMonitor, a pool)."""
