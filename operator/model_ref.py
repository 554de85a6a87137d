"""The InferenceModel being reconciled, as the builders, apply and status see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vif.operator.names import child_labels, owner_reference, selector
from vif.operator.spec import InferenceModelSpec


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
