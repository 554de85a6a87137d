"""Talks to the API server: server-side apply of children, pruning, reading, status patches."""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from vif.operator.builders import CHILD_KINDS, ModelRef
from vif.operator.spec import GROUP, KIND, VERSION

FIELD_MANAGER = "vif-operator"
SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
log = logging.getLogger(__name__)


def load_kube_config() -> None:
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()


class ClusterClient:
    """A thin layer over the dynamic client: every call the operator makes to the API server."""

    def __init__(self, api: DynamicClient | None = None) -> None:
        self.api = api or DynamicClient(k8s.ApiClient())

    def _resource(self, api_version: str, kind: str) -> Any:
        """The API resource for a kind, re-reading discovery once when the cached copy does not know it
        (a CRD installed after the operator started)."""
        try:
            return self.api.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            self.api.resources.invalidate_cache()
            return self.api.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply, taking back fields someone else changed (that is how drift is reverted)."""
        resource = self._resource(obj["apiVersion"], obj["kind"])
        result = resource.server_side_apply(body=obj, field_manager=FIELD_MANAGER, force_conflicts=True)
        return result.to_dict()

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def prune(self, ref: ModelRef, keep: set[str]) -> list[str]:
        """Delete children of kinds the spec no longer asks for (an HPA after autoscaling is switched off)."""
        deleted = []
        for api_version, kind in CHILD_KINDS:
            if kind in keep:
                continue
            try:
                resource = self._resource(api_version, kind)
            except ResourceNotFoundError:
                continue  # the kind is not installed (no Prometheus Operator): nothing to prune
            selector = ",".join(f"{k}={v}" for k, v in ref.labels().items())
            try:
                items = resource.get(namespace=ref.namespace, label_selector=selector).items
            except NotFoundError:  # discovery was stale: the kind was removed (its CRD deleted)
                self.api.resources.invalidate_cache()
                continue
            for item in items:
                owners = item.metadata.ownerReferences or []
                if any(o.uid == ref.uid for o in owners):
                    resource.delete(name=item.metadata.name, namespace=ref.namespace)
                    deleted.append(f"{kind}/{item.metadata.name}")
        return deleted

    def crd_installed(self, name: str) -> bool:
        return self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", name) is not None

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"{GROUP}/{VERSION}", KIND, namespace, name)

    def patch_model_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        resource = self._resource(f"{GROUP}/{VERSION}", KIND)
        resource.status.patch(
            body={"status": status}, name=name, namespace=namespace, content_type="application/merge-patch+json"
        )
