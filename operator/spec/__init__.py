"""The `InferenceModel` API (inference.vif.dev/v1alpha1): the one source of the CRD's schema.

`vif.operator.crd` turns these models into the CustomResourceDefinition in `crds/`; a test fails when the
file and the models differ. Field names are camelCase on the wire, snake_case in Python. Cross-field rules
are CEL (`x-kubernetes-validations`) so the API server refuses bad objects before the operator sees them.

    schema.py    the group and kind, field types and patterns, CEL rules, the camelCase base model
    sources.py   where the weights and adapters come from, and the download cache
    model.py     InferenceModelSpec: engine, serving, scaling, routing, placement
    status.py    InferenceModelStatus: conditions, replicas, endpoint, download
"""

from vif.operator.spec.model import DEFAULT_TARGETS, Autoscaling, InferenceModelSpec
from vif.operator.spec.schema import (
    DEFAULT_GRACE_SECONDS,
    GROUP,
    KIND,
    MAX_GRACE_SECONDS,
    MIN_GRACE_SECONDS,
    PLURAL,
    VERSION,
)
from vif.operator.spec.sources import Adapter, HuggingFaceSource, ModelCache, S3ModelSource
from vif.operator.spec.status import InferenceModelStatus

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_TARGETS",
    "GROUP",
    "KIND",
    "MAX_GRACE_SECONDS",
    "MIN_GRACE_SECONDS",
    "PLURAL",
    "VERSION",
    "Adapter",
    "Autoscaling",
    "HuggingFaceSource",
    "InferenceModelSpec",
    "InferenceModelStatus",
    "ModelCache",
    "S3ModelSource",
]
