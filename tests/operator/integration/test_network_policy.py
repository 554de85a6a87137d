"""The operator's NetworkPolicy on the local plane: the API server takes it as built, it follows the model's list,
and it goes with the model. The local plane has no network plugin, so nothing enforces it here (docs/security.md)."""

from __future__ import annotations

from .conftest import OperatorProcess, apply_model, get, kubectl, model_manifest, wait_for

SPEC = {"model": {"path": "/models/SmolLM2-135M-Instruct"}, "networkPolicy": {"mode": "on"}}


def test_the_replicas_network_policy_is_applied_updated_and_deleted(
    namespace: str, operator_process: OperatorProcess
) -> None:
    apply_model(namespace, model_manifest("fenced", SPEC))
    fence = wait_for(lambda: get("networkpolicy", "fenced", namespace), "the NetworkPolicy")
    assert fence["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "fenced"
    (rule,) = fence["spec"]["ingress"]
    assert [peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["from"]] == ["vif-router"]

    listed = {**SPEC, "networkPolicy": {"mode": "on", "fromNamespaces": ["apps"]}}
    apply_model(namespace, model_manifest("fenced", listed))
    wait_for(lambda: len(peers(namespace)) == 2, "the listed namespace let through")
    assert peers(namespace)[1] == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}

    kubectl("delete", "inferencemodel", "fenced", "-n", namespace, "--wait=true")
    wait_for(lambda: get("networkpolicy", "fenced", namespace) is None, "the NetworkPolicy deleted with its model")


def peers(namespace: str) -> list[dict[str, object]]:
    fence = get("networkpolicy", "fenced", namespace)
    return list(fence["spec"]["ingress"][0]["from"]) if fence else []
