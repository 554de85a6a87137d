"""Pure builders: spec in, manifests out, checked without a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers.model_children import own_children
from vif.operator.builders import build_children
from vif.operator.builders.common import tracing_problem
from vif.operator.builders.security import cache_env
from vif.operator.model_ref import ModelRef
from vif.operator.names import CONFIG_HASH
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec

SETTINGS = OperatorSettings(runtime_image="registry.local/vif-runtime:test")
CPU_MODEL = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "servedName": "smollm2-135m-instruct"}


def children(spec: dict[str, Any], service_monitor_crd: bool = False) -> dict[str, dict[str, Any]]:
    return own_children(spec, SETTINGS, service_monitor_crd)


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def test_default_cpu_model() -> None:
    objs = children(CPU_MODEL)
    assert set(objs) == {"ServiceAccount", "ConfigMap", "ConfigMap/live", "Deployment", "Service"}
    config = json.loads(objs["ConfigMap"]["data"]["model_config.json"])
    assert config == {
        "smollm2-135m-instruct": {
            "class_name": "OpenAIServingChat",
            "model_path": "/models/SmolLM2-135M-Instruct",
            "engine_args": {"tensor_parallel_size": 1, "dtype": "float32", "enforce_eager": True},
        }
    }
    c = container(objs)
    assert c["image"] == "registry.local/vif-runtime:test"
    assert c["command"] == ["vif-runtime", "serve"]
    assert c["args"] == [
        "--config", "/etc/vif/model_config.json", "--model-name", "smollm2-135m-instruct",
        "--host", "0.0.0.0", "--port", "8000", "--metrics-port", "9090", "--live-config", "/etc/vif-live/live.json",
        "--drain-seconds", "5", "--shutdown-timeout", "40",
        "--allowed-root", "/models",
    ]  # fmt: skip
    assert c["env"] == cache_env()  # no VLLM_CPU_KVCACHE_SPACE: the runtime sizes it from the memory limit
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert objs["Deployment"]["spec"]["replicas"] == 1
    assert objs["Service"]["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ]


def test_every_child_is_owned_and_labelled() -> None:
    for obj in children({**CPU_MODEL, "replicas": 2, "autoscaling": {"maxReplicas": 4}}, True).values():
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "InferenceModel",
            "chat",
            "uid-1",
            True,
        )
        assert obj["metadata"]["namespace"] == "team-a"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "vif-operator"


def test_config_change_rolls_the_pods() -> None:
    before = children(CPU_MODEL)["Deployment"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
    changed = children({**CPU_MODEL, "engine": {"maxModelLen": 1024}})
    after = changed["Deployment"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
    assert before != after
    assert (
        json.loads(changed["ConfigMap"]["data"]["model_config.json"])["smollm2-135m-instruct"]["max_model_len"] == 1024
    )
    assert before == children(CPU_MODEL)["Deployment"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]


def test_gpu_model_with_tensor_parallel() -> None:
    spec = {
        "model": {"huggingFace": {"id": "meta-llama/Llama-3.1-8B-Instruct", "tokenSecret": {"name": "hf"}}},
        "engine": {
            "tensorParallelSize": 2,
            "dtype": "bfloat16",
            "gpuMemoryUtilization": 0.9,
            "extraArgs": ["--max-num-seqs", "64"],
        },
        "resources": {"gpu": 2, "cpu": "8", "memory": "64Gi"},
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    objs = children(spec)
    entry = json.loads(objs["ConfigMap"]["data"]["model_config.json"])["chat"]
    assert entry["model_id"] == "meta-llama/Llama-3.1-8B-Instruct" and "model_path" not in entry
    assert entry["engine_args"] == {"tensor_parallel_size": 2, "dtype": "bfloat16", "gpu_memory_utilization": 0.9}
    c = container(objs)
    assert c["resources"] == {
        "requests": {"cpu": "8", "memory": "64Gi"},
        "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"},
    }
    assert c["args"][-2:] == ["--max-num-seqs", "64"]
    env = {e["name"]: e for e in c["env"]}
    assert "VLLM_CPU_KVCACHE_SPACE" not in env
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_live_settings_reach_the_runtime_in_its_live_file_and_change_no_pod(tmp_path: Path) -> None:
    """The role, the log level and the response cache are in the live ConfigMap, which the pods mount whole; a
    change to them leaves the pod template as it was (docs/live-config.md)."""
    from vif.runtime.app.live import LiveSources
    from vif.runtime.app.response_cache import CacheSettings

    objs = children(CPU_MODEL)
    spec = {**CPU_MODEL, "serving": {"responseRole": "bot", "logLevel": "debug",
                                     "responseCache": {"maxEntries": 500, "maxMebibytes": 16}}}  # fmt: skip
    changed = children(spec)
    live = changed["ConfigMap/live"]
    assert live["metadata"]["name"] == "chat-live" and "immutable" not in live
    assert changed["Deployment"] == objs["Deployment"] and changed["ConfigMap"] == objs["ConfigMap"]
    assert not any(a.startswith("--response-cache") for a in container(changed)["args"])
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    volumes = {v["name"]: v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["live"]["configMap"] == {"name": "chat-live"}  # no items, no subPath: the kubelet updates it
    assert mounts["live"] == {"name": "live", "mountPath": "/etc/vif-live", "readOnly": True}
    # the runtime reads what the operator writes
    (tmp_path / "live.json").write_text(live["data"]["live.json"])
    read = LiveSources(live_file=tmp_path / "live.json").read()
    assert (read.response_role, read.log_level, read.response_cache) == (
        "bot",
        "debug",
        CacheSettings(500, 16 << 20, 600),
    )


def test_pvc_chat_template_api_key_and_env() -> None:
    spec = {
        "model": {"pvc": {"claimName": "weights", "path": "llama"}},
        "serving": {"chatTemplate": {"name": "templates", "key": "chatml.jinja"}, "responseRole": "bot"},
        "apiKeySecret": {"name": "keys", "key": "api-keys"},
        "env": [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": "4"}, {"name": "EXTRA", "value": "1"}],
    }
    objs = children(spec)
    entry = json.loads(objs["ConfigMap"]["data"]["model_config.json"])["chat"]
    assert entry["model_path"] == "/models/pvc/llama"
    assert entry["chat_template"] == "/etc/vif-chat-template/chatml.jinja" and "response_role" not in entry
    assert json.loads(objs["ConfigMap/live"]["data"]["live.json"])["response_role"] == "bot"  # live: not a roll
    c = container(objs)
    assert c["args"][-4:] == ["--allowed-root", "/models/pvc", "--allowed-root", "/etc/vif-chat-template"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/etc/vif", "/etc/vif-chat-template"} <= mounts  # separate: no mount inside the read-only one
    env = [(e["name"], e.get("value"), e.get("valueFrom")) for e in c["env"][len(cache_env()) :]]
    assert env == [
        ("VLLM_CPU_KVCACHE_SPACE", "4", None),
        ("EXTRA", "1", None),
    ]
    volumes = {v["name"]: v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
    only_key = [{"key": "chatml.jinja", "path": "chatml.jinja"}]  # never the whole ConfigMap
    assert volumes["chat-template"]["configMap"] == {"name": "templates", "items": only_key}
    # the keys as a mounted file, which the kubelet updates in place (an env var from a Secret never changes)
    assert volumes["api-keys"]["secret"] == {"secretName": "keys", "items": [{"key": "api-keys", "path": "keys"}]}
    assert {"name": "api-keys", "mountPath": "/etc/vif-api-keys", "readOnly": True} in c["volumeMounts"]
    assert c["args"][c["args"].index("--api-keys-file") + 1] == "/etc/vif-api-keys/keys"


@pytest.mark.parametrize(("metric", "expected"), [
    ("queue", {"type": "Pods", "pods": {"metric": {"name": "vif_requests_in_flight"}, "target": {"type": "AverageValue", "averageValue": "5"}}}),
    ("waiting-requests", {"type": "Pods", "pods": {"metric": {"name": "vif_requests_in_flight"}, "target": {"type": "AverageValue", "averageValue": "5"}}}),
    ("cpu", {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}),
])  # fmt: skip
def test_autoscaling(metric: str, expected: dict[str, Any]) -> None:
    objs = children({**CPU_MODEL, "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "metric": metric}})
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"], hpa["metrics"]) == (2, 5, [expected])
    assert hpa["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"}
    assert "replicas" not in objs["Deployment"]["spec"]  # the HPA owns the count
    assert objs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_pdb_only_with_more_than_one_replica() -> None:
    assert "PodDisruptionBudget" not in children({**CPU_MODEL, "replicas": 1})
    assert "PodDisruptionBudget" in children({**CPU_MODEL, "replicas": 3})


@pytest.mark.parametrize(("mode", "crd_installed", "created"), [
    ("auto", True, True), ("auto", False, False), ("on", False, True), ("off", True, False),
])  # fmt: skip
def test_service_monitor(mode: str, crd_installed: bool, created: bool) -> None:
    objs = children({**CPU_MODEL, "monitoring": {"serviceMonitor": mode, "interval": "15s"}}, crd_installed)
    assert ("ServiceMonitor" in objs) == created
    if created:
        endpoints = objs["ServiceMonitor"]["spec"]["endpoints"]
        assert endpoints == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]


def test_pod_settings_users_of_kserve_and_kubeai_expect() -> None:
    spec = {
        **CPU_MODEL,
        "serviceAccountName": "models",
        "imagePullSecrets": ["registry"],
        "priorityClassName": "inference",
        "podAnnotations": {"team": "a"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
    }
    objs = children(spec)
    assert "ServiceAccount" not in objs  # the pods run as the named one
    deployment = objs["Deployment"]["spec"]["template"]
    pod = deployment["spec"]
    assert (pod["serviceAccountName"], pod["priorityClassName"]) == ("models", "inference")
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["affinity"] == spec["affinity"]
    assert deployment["metadata"]["annotations"]["team"] == "a"
    assert CONFIG_HASH in deployment["metadata"]["annotations"]


def test_endpoint() -> None:
    ref = ModelRef("chat", "team-a", "u", InferenceModelSpec.model_validate({**CPU_MODEL, "service": {"port": 8080}}))
    assert ref.endpoint() == "http://chat.team-a.svc.cluster.local:8080/v1"


def test_tracing_sends_the_standard_variables_to_the_runtime_and_the_router() -> None:
    """spec.tracing with the operator's collector: the runtime and the router export with the model's ratio."""
    from vif.operator.builders.routing import router_name

    settings = OperatorSettings(runtime_image="vif-runtime:test", traces_endpoint="http://collector.tracing:4317")
    ref = ModelRef("chat", "team-a", "uid-1", InferenceModelSpec.model_validate({**CPU_MODEL, "tracing": {}}))
    built = {(c["kind"], c["metadata"]["name"]): c for c in build_children(ref, settings, False)}
    for name, service in (("chat", "vif-runtime"), (router_name(ref), "vif-router")):
        (c,) = built["Deployment", name]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://collector.tracing:4317"
        assert (env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"]) == ("parentbased_traceidratio", "0.1")
        assert env["OTEL_SERVICE_NAME"] == service and "vif.model=chat" in env["OTEL_RESOURCE_ATTRIBUTES"]
    untraced = {(c["kind"], c["metadata"]["name"]): c for c in build_children(ref, SETTINGS, False)}
    (c,) = untraced["Deployment", "chat"]["spec"]["template"]["spec"]["containers"]
    assert not [e for e in c["env"] if e["name"].startswith("OTEL_")]  # no collector: nothing to send to
    logged = InferenceModelSpec.model_validate({**CPU_MODEL, "tracing": {"logs": True}})
    built = {
        (c["kind"], c["metadata"]["name"]): c
        for c in build_children(ModelRef("chat", "team-a", "u", logged), settings, False)
    }
    (c,) = built["Deployment", "chat"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "value": "http://collector.tracing:4317"} in c["env"]
    assert "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" not in env  # logs only when asked for
    assert tracing_problem(ref, SETTINGS) == (
        "TracingEndpointMissing",
        "spec.tracing is set but the operator has no collector (--traces-endpoint, chart value tracing.endpoint);"
        " serving without traces",
    )
    assert tracing_problem(ref, settings) is None
