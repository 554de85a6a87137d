"""The identity the model's pods run as: a ServiceAccount of their own, without an API token."""

from __future__ import annotations

from typing import Any

from vif.operator.kinds import SERVICE_ACCOUNT
from vif.operator.model_ref import ModelRef


def service_account_name(ref: ModelRef) -> str:
    """The spec's ServiceAccount if it names one, else the model's own (`build_service_account`)."""
    return ref.spec.service_account_name or ref.name


def build_service_account(ref: ModelRef) -> dict[str, Any] | None:
    """A ServiceAccount named like the model, or None when the spec names another one.

    The runtime never calls the Kubernetes API, so it gets no token: a pod of one model does not share the
    namespace's `default` ServiceAccount (and whatever rights someone bound to it) with everything else.
    """
    if ref.spec.service_account_name:
        return None
    metadata = ref.metadata()
    return SERVICE_ACCOUNT.manifest(metadata, automountServiceAccountToken=False)
