"""Invalid InferenceModels are refused by the API server itself, with a clear message."""

from __future__ import annotations

import pytest
import yaml

from .conftest import kubectl, model_manifest

BASE = {"model": {"path": "/models/m"}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {**BASE, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
            "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        ),
        (
            {**BASE, "autoscaling": {"minReplicas": 0, "metric": "cpu"}},
            "autoscaling.minReplicas 0 needs metric queue or kv-cache",
        ),
        (
            {**BASE, "autoscaling": {"metric": "kv-cache", "target": 101}},
            "autoscaling.target is a percentage of the KV cache with metric kv-cache: at most 100",
        ),
        ({**BASE, "autoscaling": {"scaleDownDelaySeconds": 3601}}, "should be less than or equal to 3600"),
        (
            {**BASE, "resources": {"gpu": -1}},
            "spec.resources.gpu: Invalid value: -1: spec.resources.gpu in body should be greater than or equal to 0",
        ),
        ({**BASE, "colour": "blue"}, 'unknown field "spec.colour"'),
        (
            {**BASE, "routing": {"strategy": "round-robin", "sessionAffinity": True}},
            "routing.sessionAffinity needs routing.strategy prefix-hash",
        ),
        (
            {**BASE, "routing": {"strategy": "none"}, "tenants": {"keys": [{"name": "a", "keySecret": {"name": "s"}}]}},
            "tenants need the router (routing.strategy other than none)",
        ),
        (
            {
                **BASE,
                "apiKeySecret": {"name": "k"},
                "tenants": {"keys": [{"name": "default", "keySecret": {"name": "s"}}]},
            },
            "tenants.keys: the name default is apiKeySecret's keys' tenant",
        ),
        (
            {"model": {"path": "/m", "huggingFace": {"id": "a/b"}}},
            "set exactly one of model.path, model.pvc, model.huggingFace and model.s3",
        ),
        ({"model": {}}, "set exactly one of model.path, model.pvc, model.huggingFace and model.s3"),
        (
            {"model": {"path": "/m", "cache": {"size": "1Gi"}}},
            "model.cache holds a download: only with model.huggingFace or model.s3",
        ),
        ({"model": {"huggingFace": {"id": "a/b", "revision": "x/../y"}}}, "spec.model.huggingFace.revision"),
        (
            {"model": {"huggingFace": {"id": "a/b"}, "cache": {"size": "1Gi", "claimName": "models"}}},
            "model.cache takes size (a claim of the model's own) or claimName (a claim models share), not both",
        ),
        ({"model": {"s3": {"uri": "s3://models/x"}}}, "model.s3 is downloaded into model.cache: set it"),
        ({"model": {"s3": {"uri": "s3://models/../x"}, "cache": {"size": "1Gi"}}}, "spec.model.s3.uri"),
        ({**BASE, "replicas": -1}, "spec.replicas in body should be greater than or equal to 0"),
        ({**BASE, "service": {"type": "Ingress"}}, 'spec.service.type: Unsupported value: "Ingress"'),
        ({"servedName": "x"}, "spec.model: Required value"),
        (
            {**BASE, "resources": {"gpu": 2}, "engine": {"tensorParallelSize": 4}},
            "engine.tensorParallelSize must not exceed resources.gpu",
        ),
        (
            {**BASE, "engine": {"gpuMemoryUtilization": 0.8}},
            "engine.gpuMemoryUtilization is set but resources.gpu is 0 (a CPU model)",
        ),
        (
            {**BASE, "adapters": [{"name": "a", "path": "/a", "huggingFace": {"id": "org/a"}}]},
            "set exactly one of path, pvc and huggingFace in each of adapters",
        ),
        ({**BASE, "adapters": [{"name": "a", "path": "/a"}, {"name": "a", "path": "/b"}]}, "Duplicate value"),
        ({**BASE, "adapters": [{"name": "bad", "path": "/a"}]}, "an adapter cannot take the model's served name"),
    ],
)
def test_refused_with_a_clear_message(cluster, namespace: str, spec: dict, message: str) -> None:
    result = kubectl(
        "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest("bad", spec)), check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert kubectl("get", "im", "bad", "-n", namespace, check=False).returncode != 0


@pytest.mark.parametrize("name", ["m" * 64, "my.model", "1model"])
def test_names_that_make_invalid_child_names_are_refused(cluster, namespace: str, name: str) -> None:
    """The model's Service takes its name, and a Service name is a DNS-1035 label of at most 63 characters."""
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest(name, BASE)), check=False)
    assert result.returncode != 0
    assert "metadata.name must be a DNS-1035 label of at most 63 characters" in result.stderr, result.stderr
    assert kubectl("get", "im", name, "-n", namespace, check=False).returncode != 0


def test_a_routed_name_leaves_room_for_the_replicas_service(cluster, namespace: str) -> None:
    """By default a router fronts the model, and `<name>-replicas` must be a DNS-1035 label too."""
    name = "m" * 55
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest(name, BASE)), check=False)
    assert result.returncode != 0
    assert "metadata.name must be at most 54 characters with a router" in result.stderr, result.stderr
    plain = {**BASE, "routing": {"strategy": "none"}}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest(name, plain)))


def test_gpu_model_within_its_gpus_is_accepted(cluster, namespace: str) -> None:
    spec = {**BASE, "resources": {"gpu": 2}, "engine": {"tensorParallelSize": 2, "gpuMemoryUtilization": 0.8}}
    plain = {**spec, "routing": {"strategy": "none"}}  # the longest name: no `<name>-replicas` Service
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest("m" * 63, plain)))


def test_scale_to_zero_and_the_deprecated_metric_are_accepted(cluster, namespace: str) -> None:
    idle = {**BASE, "autoscaling": {"minReplicas": 0, "metric": "kv-cache", "target": 100}}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest("idle", idle)))
    old = {**BASE, "autoscaling": {"metric": "waiting-requests"}}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest("old", old)))
    spec = yaml.safe_load(kubectl("get", "im", "old", "-n", namespace, "-o", "yaml").stdout)["spec"]
    assert spec["autoscaling"] == {"minReplicas": 1, "maxReplicas": 3, "metric": "waiting-requests",
                                   "scaleDownDelaySeconds": 300}  # fmt: skip


def test_defaults_are_filled_by_the_api_server(cluster, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(model_manifest("ok", BASE)))
    spec = yaml.safe_load(kubectl("get", "im", "ok", "-n", namespace, "-o", "yaml").stdout)["spec"]
    assert spec["engine"]["dtype"] == "auto" and spec["engine"]["tensorParallelSize"] == 1
    assert spec["service"] == {"type": "ClusterIP", "port": 80} and spec["replicas"] == 1
    assert spec["monitoring"] == {"serviceMonitor": "auto", "interval": "30s"}
