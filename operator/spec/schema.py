"""What every part of the `InferenceModel` API is made of: the group and kind, the field types and patterns the
API server checks, CEL rules, and camelCase models that refuse unknown fields."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
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
MAX_TENANTS = 64  # bounds the CEL rules' cost over spec.tenants.keys, and the router's per-tenant metrics


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
