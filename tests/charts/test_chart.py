"""`helm lint`, and `helm template` applied with --dry-run=server to the real API server, for several value
sets; the RBAC grants only what the operator uses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from helpers.cluster import REPO, cached_tool, helm, kubectl, require_cluster
from vif.operator.kinds import CRD, INFERENCE_MODEL, KINDS, POD

pytestmark = pytest.mark.cluster
CHART = str(REPO / "charts" / "vif-operator")
VALUE_SETS = {
    "defaults": [],
    "namespaced-ha": ["--set", "replicaCount=2", "--set", "watchNamespaces={team-a,team-b}"],
    "monitored": ["--set", "serviceMonitor.enabled=true", "--set", "image.tag=dev", "--set", "runtimeImage=r:1",
                  "--set", "dashboards.enabled=true"],
    "autoscaled": ["--set", "autoscaling.prometheusAddress=http://prometheus-operated.monitoring.svc:9090"],
    "policy-loosened": [
        "--set", "policy.allowedImagePrefixes={reg:5000/ml,reg.io/team/}",
        "--set", "policy.allowedServiceAccounts={models}",
        "--set", "policy.allowedServiceTypes={ClusterIP,LoadBalancer}",
        "--set", "policy.allowedPriorityClasses={inference}",
        "--set", "policy.allowedEnvPatterns={OMP_*,TZ?}",
        "--set", "policy.allowedExtraArgs={--max-num-seqs}",
    ],
    "policy-closed": ["--set", "policy.allowedEnvPatterns=null", "--set", "policy.allowedExtraArgs=null"],
    "tenants-redis": ["--set", "tenants.redis.install=true"],
}  # fmt: skip


def render(args: list[str], namespace: str = "vif-system") -> list[dict[str, Any]]:
    out = helm("template", "vif", CHART, "-n", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def namespaces() -> Iterator[list[str]]:
    require_cluster()
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl("apply", "--server-side", "-f", str(cached_tool("monitoring.coreos.com_servicemonitors.yaml")))
    names = [f"vif-system-{uuid.uuid4().hex[:6]}", "team-a", "team-b"]
    for name in names:
        kubectl("create", "namespace", name, check=False)
    yield names
    kubectl("delete", "namespace", names[0], "--wait=false", check=False)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_and_server_dry_run(values: list[str], namespaces: list[str]) -> None:
    lint = helm("lint", CHART, "--strict", *values)
    assert "0 chart(s) failed" in lint.stdout
    manifest = helm("template", "vif", CHART, "-n", namespaces[0], *values).stdout
    applied = kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest)
    assert "deployment.apps/vif-vif-operator created (server dry run)" in applied.stdout
    policy = "validatingadmissionpolicy.admissionregistration.k8s.io/vif-vif-operator-policy created (server dry run)"
    assert policy in applied.stdout  # the API server compiles the CEL when it accepts the policy


def test_rbac_is_least_privilege() -> None:
    for args in VALUE_SETS.values():
        for doc in render(args):
            if doc["kind"] not in {"Role", "ClusterRole"}:
                continue
            for rule in doc["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
                assert "secrets" not in rule["resources"], "the operator never reads Secrets"
                assert not {"update", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])


OWNER_VERBS = {"get", "list", "watch", "create", "patch", "delete"}
USES = {kind.name: OWNER_VERBS for kind in KINDS.values() if kind.owned} | {
    POD.name: {"get", "list"},  # a download's progress
    INFERENCE_MODEL.name: {"get", "list", "watch", "patch"},
    CRD.name: {"get", "list", "watch"},
}


def test_rbac_grants_exactly_what_the_kinds_table_uses() -> None:
    """Every kind of vif.operator.kinds gets the verbs the operator uses on it, and no more; a new row without its
    RBAC (or RBAC left behind by a removed one) fails here."""
    assert set(USES) == set(KINDS)
    granted: dict[tuple[str, str], set[str]] = {}
    for doc in render([]):
        if doc["kind"] in {"Role", "ClusterRole"}:
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        granted.setdefault((group, resource), set()).update(rule["verbs"])
    for kind in KINDS.values():
        assert granted.get((kind.group, kind.plural)) == USES[kind.name], kind.name


def test_namespaced_install_has_no_cluster_wide_model_rights() -> None:
    docs = render(VALUE_SETS["namespaced-ha"])
    cluster_rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    assert {res for r in cluster_rules for res in r["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
        "clusterkopfpeerings",
    }
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--peering=vif-vif-operator" in args


def test_operator_pod_is_hardened() -> None:
    deployment = next(d for d in render([]) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["image"] == "vif-operator:0.1.0"
    assert "--runtime-image=vif-runtime:0.1.0" in container["args"]
    assert not any(a.startswith("--peering") for a in container["args"])  # one replica: no peering


def test_service_monitor_only_when_asked() -> None:
    assert not [d for d in render([]) if d["kind"] == "ServiceMonitor"]
    (monitor,) = [d for d in render(VALUE_SETS["monitored"]) if d["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_prometheus_address_reaches_the_operator_and_scaled_objects_are_allowed() -> None:
    assert not [a for a in operator_args(render([])) if a.startswith("--prometheus-address")]
    docs = render(VALUE_SETS["autoscaled"])
    assert "--prometheus-address=http://prometheus-operated.monitoring.svc:9090" in operator_args(docs)
    (models,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-models")]
    assert {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"]} in models["rules"]  # fmt: skip


def test_the_hub_endpoint_reaches_the_operator_and_claims_are_allowed() -> None:
    """spec.model.cache: the operator makes each model's claim, and its downloads use the chart's hub."""
    assert not [a for a in operator_args(render([])) if a.startswith("--hub-endpoint")]
    docs = render(["--set", "huggingFace.endpoint=http://hub-mirror.infra:8080"])
    assert "--hub-endpoint=http://hub-mirror.infra:8080" in operator_args(docs)
    (models,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-models")]
    assert {"apiGroups": [""], "resources": ["persistentvolumeclaims"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"]} in models["rules"]  # fmt: skip
    # the download's progress: the operator lists the model's pods to ask them, and changes none
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]} in models["rules"]


def test_policy_values_reach_the_operator_and_the_admission_policy() -> None:
    docs = render(VALUE_SETS["policy-loosened"])
    args = operator_args(docs)
    for flag in [
        "--allowed-image-prefix=reg:5000/ml",
        "--allowed-service-account=models",
        "--allowed-service-type=LoadBalancer",
        "--allowed-priority-class=inference",
        "--allowed-env-patterns=OMP_*,TZ?",
        "--allowed-extra-args=--max-num-seqs",
    ]:
        assert flag in args, args
    (policy,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    cel = "\n".join(v["expression"] for v in policy["spec"]["validations"])
    assert '["reg:5000/ml","reg.io/team"]' in cel and '["models"]' in cel and '["ClusterIP","LoadBalancer"]' in cel
    assert '"^(OMP_.*|TZ.)$"' in cel and '["--max-num-seqs"]' in cel


def test_default_policy_is_the_runtime_repository_and_cluster_wide() -> None:
    docs = render(["--set", "runtimeImage=reg:5000/team/vif-runtime@sha256:abc"])
    assert "--allowed-extra-args=--limit-concurrency,--max-sequences-per-request," in " ".join(operator_args(docs))
    (policy,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert 'variables.imageRepo == "reg:5000/team/vif-runtime"' in policy["spec"]["validations"][0]["expression"]
    (binding,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}


def test_admission_binding_follows_watch_namespaces() -> None:
    (binding,) = [d for d in render(VALUE_SETS["namespaced-ha"]) if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    (selector,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert selector == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}


def test_empty_allow_lists_allow_no_env_and_no_flag_and_admission_can_be_off() -> None:
    docs = render(VALUE_SETS["policy-closed"])
    assert "--allowed-env-patterns=" in operator_args(docs) and "--allowed-extra-args=" in operator_args(docs)
    (policy,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    rules = [v["expression"] for v in policy["spec"]["validations"]]
    (env_rule,) = [r for r in rules if "object.spec.env.all" in r]
    (args_rule,) = [r for r in rules if "extraArgs.all" in r]
    assert '"^()$"' in env_rule and " in []" in args_rule
    off = render(["--set", "policy.admission.enabled=false"])
    assert not [d for d in off if d["kind"].startswith("ValidatingAdmissionPolicy")]


def test_the_traces_endpoint_reaches_the_operator() -> None:
    assert not [a for a in operator_args(render([])) if a.startswith("--traces-endpoint")]
    docs = render(["--set", "tracing.endpoint=http://jaeger-collector.tracing.svc:4317"])
    assert "--traces-endpoint=http://jaeger-collector.tracing.svc:4317" in operator_args(docs)


def test_the_charts_own_redis_only_when_asked_and_the_operator_points_the_routers_at_it() -> None:
    def redis_objects(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(d["kind"], d["metadata"]["name"]) for d in docs if d["metadata"]["name"].endswith("-redis")]

    assert redis_objects(render([])) == []
    assert not [a for a in operator_args(render([])) if a.startswith("--redis-url")]
    docs = render(["--set", "tenants.redis.install=true"])
    name = "vif-vif-operator-redis"
    assert sorted(redis_objects(docs)) == [("Deployment", name), ("NetworkPolicy", name), ("Service", name)]
    assert f"--redis-url=redis://{name}.vif-system.svc:6379/0" in operator_args(docs)
    pod = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")["spec"]["ingress"]
    assert policy == [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "vif-router"}}}], "ports": [{"port": "redis"}]}]  # fmt: skip

    given = render(["--set", "tenants.redis.install=true", "--set", "tenants.redisUrl=redis://mine:6379/1"])
    assert redis_objects(given) == [] and "--redis-url=redis://mine:6379/1" in operator_args(given)
