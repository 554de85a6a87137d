"""The kinds table: the names it derives, and that nothing else spells a kind's apiVersion."""

from __future__ import annotations

import re
from pathlib import Path

from vif.operator.kinds import CRD, DEPLOYMENT, KINDS, OPTIONAL_CRDS, OWNED_KINDS, POD, SERVICE, SERVICE_MONITOR

OPERATOR = Path(__file__).resolve().parents[2] / "operator"


def test_paths_groups_and_crd_names() -> None:
    assert SERVICE.path("ns", "a") == "/api/v1/namespaces/ns/services/a" and SERVICE.group == ""
    assert DEPLOYMENT.path("ns") == "/apis/apps/v1/namespaces/ns/deployments"
    assert CRD.path(None, "x.y") == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.y"
    assert SERVICE_MONITOR.crd == "servicemonitors.monitoring.coreos.com"
    assert set(OPTIONAL_CRDS) == {
        "servicemonitors.monitoring.coreos.com", "scaledobjects.keda.sh", "inferencepools.inference.networking.k8s.io",
    }  # fmt: skip
    assert POD.name not in OWNED_KINDS and "Deployment" in OWNED_KINDS and set(OWNED_KINDS) <= set(KINDS)


def test_a_manifest_starts_with_its_kind() -> None:
    manifest = SERVICE.manifest({"name": "a"}, spec={"type": "ClusterIP"})
    assert manifest == {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"type": "ClusterIP"}}


def test_no_module_but_the_table_spells_an_api_version() -> None:
    literal = re.compile(r'"apiVersion":\s*"(?!v1", "preconditions")')  # a DeleteOptions body is no kind
    spelled = [p.name for p in OPERATOR.rglob("*.py") if p.name != "kinds.py" and literal.search(p.read_text())]
    assert not spelled, "apiVersion literals outside vif.operator.kinds"
