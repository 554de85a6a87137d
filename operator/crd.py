"""Generates the InferenceModel CustomResourceDefinition from the spec models in `vif.operator.spec`.

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3.0 schema: no `$ref`, no
`anyOf` around a type, boolean `exclusiveMinimum`, free-form objects marked `x-kubernetes-preserve-unknown-fields`.
`python -m vif.operator.crd > crds/inference.vif.dev_inferencemodels.yaml` (`make crds`) writes the file.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from vif.operator.kinds import CRD, INFERENCE_MODEL
from vif.operator.spec import GROUP, KIND, PLURAL, VERSION, InferenceModelSpec, InferenceModelStatus

CRD_FILE = f"{GROUP}_{PLURAL}.yaml"
_DROPPED = {"title", "$defs"}
# Children are named after the model, and a Service's name is a DNS-1035 label (RFC 1035: a letter first); the
# longest derived name, the ConfigMap's `<name>-config-<10 hex>`, stays far below a ConfigMap's limit of 253.
NAME_RULE = {
    "rule": "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
    "message": "metadata.name must be a DNS-1035 label of at most 63 characters (a-z, 0-9 and '-', starting with a"
    " letter, ending with a letter or digit): the model's Service is named after it",
}

# With a router the model also has a `<name>-replicas` Service (`builders.routing`), so 9 characters fewer.
ROUTED_NAME_RULE = {
    "rule": "(has(self.spec.routing) && has(self.spec.routing.strategy) && self.spec.routing.strategy == 'none')"
    " || self.metadata.name.size() <= 54",
    "message": "metadata.name must be at most 54 characters with a router (spec.routing.strategy other than none,"
    " the default): the Service `<name>-replicas` is named after it",
}

# The runtime serves each adapter under its own name beside the model's (the default of servedName is the name).
ADAPTER_NAME_RULE = {
    "rule": "!has(self.spec.adapters) || self.spec.adapters.all(a, a.name !="
    " (has(self.spec.servedName) ? self.spec.servedName : self.metadata.name))",
    "message": "spec.adapters: an adapter cannot take the model's served name (spec.servedName, else metadata.name)",
}


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    """The structural schema of a pydantic model (by its wire names)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(schema, schema.get("$defs", {}))


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = _structural(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {**target, **_structural({k: v for k, v in node.items() if k != "$ref"}, defs)}
    if "anyOf" in node:  # Optional[X] -> X: an absent field is how Kubernetes spells "not set"
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"a CRD field cannot be a union: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _structural({**options[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:  # False is pydantic's extra="forbid"; Kubernetes refuses unknown fields itself
                out[key] = _structural(value, defs)
        elif key in {"exclusiveMinimum", "exclusiveMaximum"}:
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound], out[key] = value, True
        else:
            out[key] = value
    return out


def build_crd() -> dict[str, Any]:
    status = openapi_schema(InferenceModelStatus)
    status["x-kubernetes-preserve-unknown-fields"] = True  # kopf keeps its own progress notes there
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return {
        "apiVersion": CRD.api_version,
        "kind": CRD.name,
        "metadata": {"name": INFERENCE_MODEL.crd},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["im"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A model served by the vif runtime, with its Service, HPA and monitoring.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": openapi_schema(InferenceModelSpec),
                                "status": status,
                            },
                            "x-kubernetes-validations": [NAME_RULE, ROUTED_NAME_RULE, ADAPTER_NAME_RULE],
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Model", "type": "string", "jsonPath": ".status.servedName"},
                        {"name": "Ready", "type": "string", "jsonPath": ready},
                        {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas"},
                        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint"},
                        {"name": "Download", "type": "string", "jsonPath": ".status.download.summary"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd() -> str:
    header = "# Generated from operator/spec/ by `make crds`; do not edit by hand.\n"
    return header + yaml.dump(build_crd(), Dumper=_NoAliases, sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render_crd())
