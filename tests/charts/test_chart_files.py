"""The chart's CRDs are the top-level ones, byte for byte (the top-level ones are generated from the spec)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vif-operator"


def test_chart_crds_are_the_generated_crds() -> None:
    top = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert chart == top, "charts/vif-operator/crds differs from crds/: run `make crds`"
