"""spec.routing on a real control plane: the router's children, the EndpointSlices it discovers following the
model's scale, and the chart's RBAC letting the operator grant the router its Role (kwok makes pods ready)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from helpers.cluster import helm

from .conftest import REPO, OperatorProcess, apply_model, get, kubectl, model_manifest, wait_for
from .test_pod_security import enforce_restricted

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}
RUNTIME_PODS = {"app.kubernetes.io/name": "vif-runtime", "app.kubernetes.io/instance": "routed"}
ROUTER_PODS = {"app.kubernetes.io/name": "vif-router", "app.kubernetes.io/instance": "routed"}
CHART = str(REPO / "charts" / "vif-operator")


def ready_endpoints(namespace: str, service: str) -> list[str]:
    """The ready addresses in the Service's EndpointSlices, as the router sees them."""
    selector = f"kubernetes.io/service-name={service}"
    out = kubectl("get", "endpointslices", "-n", namespace, "-l", selector, "-o", "json").stdout
    return sorted(
        address
        for piece in json.loads(out)["items"]
        for endpoint in piece.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint["addresses"]
    )


def selector_of(namespace: str, service: str) -> dict[str, str] | None:
    found = get("service", service, namespace)
    return found["spec"]["selector"] if found else None


def test_a_routed_model_gets_a_router_that_follows_its_replicas(
    namespace: str, operator_process: OperatorProcess
) -> None:
    enforce_restricted(namespace)  # the router's pods too pass the restricted Pod Security Standard
    apply_model(namespace, model_manifest("routed", {**SPEC, "routing": {"strategy": "prefix-hash"}}))

    router = wait_for(lambda: get("deployment", "routed-router", namespace), "the router's Deployment")
    pod = router["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["vif-router"]
    assert container["args"][:6] == ["--service", f"{namespace}/routed-replicas", "--service-port", "http",
                                     "--strategy", "prefix-hash"]  # fmt: skip
    assert pod["serviceAccountName"] == "routed-router"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    wait_for(lambda: selector_of(namespace, "routed") == ROUTER_PODS, "the model's Service on the router")
    assert selector_of(namespace, "routed-replicas") == RUNTIME_PODS
    role = get("role", "routed-router", namespace)
    assert role is not None and role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    binding = get("rolebinding", "routed-router", namespace)
    assert binding is not None
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "routed-router", "namespace": namespace}]

    def endpoint() -> str | None:
        return ((get("inferencemodel", "routed", namespace) or {}).get("status") or {}).get("endpoint")

    found = wait_for(endpoint, "status.endpoint")
    assert found == f"http://routed.{namespace}.svc.cluster.local:80/v1"  # the same form as without a router

    wait_for(lambda: len(ready_endpoints(namespace, "routed-replicas")) == 1, "one replica endpoint", timeout=90)
    wait_for(lambda: len(ready_endpoints(namespace, "routed")) == 1, "the router's endpoint", timeout=90)
    router_ips = ready_endpoints(namespace, "routed")
    assert not set(router_ips) & set(ready_endpoints(namespace, "routed-replicas"))

    kubectl("patch", "inferencemodel", "routed", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":2}}')
    wait_for(lambda: len(ready_endpoints(namespace, "routed-replicas")) == 2, "two replica endpoints", timeout=90)
    assert ready_endpoints(namespace, "routed") == router_ips  # the router's own Service is unchanged

    kubectl("patch", "inferencemodel", "routed", "-n", namespace, "--type=merge",
            "-p", '{"spec":{"routing":{"strategy":"none"}}}')  # fmt: skip
    wait_for(lambda: get("deployment", "routed-router", namespace) is None, "the router pruned")
    wait_for(lambda: get("role", "routed-router", namespace) is None, "the router's Role pruned")
    assert get("service", "routed-replicas", namespace) is None
    assert selector_of(namespace, "routed") == RUNTIME_PODS


def chart_rbac(namespace: str) -> list[dict[str, Any]]:
    """The chart's namespaced rules for `namespace` (watchNamespaces), bound to its ServiceAccount there."""
    out = helm("template", "vif", CHART, "-n", namespace, "--set", f"watchNamespaces={{{namespace}}}",
               "--show-only", "templates/rbac.yaml").stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d and d["kind"] in ("Role", "RoleBinding")]


def test_the_charts_rbac_lets_the_operator_grant_the_routers_role(
    namespace: str, operator_process: OperatorProcess
) -> None:
    """The operator runs as the chart's ServiceAccount in a real install: creating the router's Role and RoleBinding
    as it (server dry run) passes the API server's RBAC escalation check only if it holds what they grant."""
    docs = chart_rbac(namespace)
    (subject,) = next(d for d in docs if d["kind"] == "RoleBinding")["subjects"]
    kubectl("create", "serviceaccount", subject["name"], "-n", namespace)
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs))
    operator = f"system:serviceaccount:{namespace}:{subject['name']}"
    apply_model(namespace, model_manifest("routed", {**SPEC, "routing": {"strategy": "least-load"}}))
    wait_for(lambda: get("rolebinding", "routed-router", namespace), "the router's RoleBinding")

    for kind in ("role", "rolebinding"):
        live = get(kind, "routed-router", namespace)
        assert live is not None
        copy = {k: v for k, v in live.items() if k in ("apiVersion", "kind", "rules", "roleRef", "subjects")}
        copy["metadata"] = {"name": "routed-router-copy", "namespace": namespace}
        created = kubectl("create", "--as", operator, "--dry-run=server", "-f", "-", stdin=json.dumps(copy),
                          check=False)  # fmt: skip
        assert created.returncode == 0, created.stderr
        for verb in ("patch", "delete", "watch"):
            allowed = kubectl("auth", "can-i", verb, f"{kind}s", "-n", namespace, "--as", operator, check=False)
            assert allowed.stdout.strip() == "yes", (verb, kind)
    # A Role granting what the operator does not hold (Secrets) is refused: the check is real.
    wider = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "wider", "namespace": namespace},
             "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}  # fmt: skip
    refused = kubectl("create", "--as", operator, "--dry-run=server", "-f", "-", stdin=json.dumps(wider), check=False)
    assert refused.returncode != 0 and "not currently held" in refused.stderr, refused.stderr


def test_a_routed_model_name_leaves_room_for_the_replicas_service(namespace: str) -> None:
    routed = {**SPEC, "routing": {}}
    long_name = "m" * 55
    refused = kubectl("apply", "-n", namespace, "-f", "-", check=False,
                      stdin=yaml.safe_dump(model_manifest(long_name, routed)))  # fmt: skip
    assert refused.returncode != 0 and "at most 54 characters" in refused.stderr, refused.stderr
    apply_model(namespace, model_manifest("m" * 54, routed))
    apply_model(namespace, model_manifest(long_name, {**SPEC, "routing": {"strategy": "none"}}))
