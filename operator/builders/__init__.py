"""Pure builders: an InferenceModel spec in, the manifests of its children out. No cluster access here."""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import content_hash
from vif.operator.builders.configmap import build_configmap, build_live_configmap
from vif.operator.builders.deployment import build_deployment
from vif.operator.builders.identity import build_service_account
from vif.operator.builders.inference_pool import build_inference_pool
from vif.operator.builders.keda import build_scaled_object
from vif.operator.builders.model_cache import build_model_cache_claim
from vif.operator.builders.networking import build_network_policy, build_service, build_service_monitor
from vif.operator.builders.routing import build_router_children
from vif.operator.builders.scaling import build_hpa, build_pdb
from vif.operator.builders.tenants import build_tenants_config_map
from vif.operator.model_ref import ModelRef
from vif.operator.settings import OperatorSettings


def wants_service_monitor(ref: ModelRef, crd_installed: bool) -> bool:
    mode = ref.spec.monitoring.service_monitor
    return mode == "on" or (mode == "auto" and crd_installed)


def build_children(
    ref: ModelRef,
    settings: OperatorSettings,
    service_monitor_crd: bool,
    keda_crd: bool = False,
    inference_pool: bool = False,
) -> list[dict[str, Any]]:
    """Every child the model should have now, in apply order (the ServiceAccount and the ConfigMaps before the pods
    that use them; the router's after the Service it fronts). With KEDA's CRD a ScaledObject stands for the HPA."""
    configmap = build_configmap(ref)
    first = (
        build_service_account(ref), configmap, build_live_configmap(ref), build_tenants_config_map(ref),
        build_model_cache_claim(ref),
    )  # fmt: skip
    children = [c for c in first if c is not None]
    children += [build_deployment(ref, settings, configmap), build_service(ref)]
    children += build_router_children(ref, settings)
    autoscaler = build_scaled_object(ref, settings) if keda_crd else build_hpa(ref)
    children += [c for c in (autoscaler, build_pdb(ref), build_network_policy(ref, settings)) if c is not None]
    if wants_service_monitor(ref, service_monitor_crd):
        children.append(build_service_monitor(ref))
    if inference_pool:
        children.append(build_inference_pool(ref))
    return children


__all__ = ["build_children", "content_hash", "wants_service_monitor"]
