"""Marking a folder's tests by what they need, from its conftest: `pytest -m` then selects them. Each test carries
one such marker at most (`refuse_doubled`): `make unit` runs the tests that carry none."""

from __future__ import annotations

from pathlib import Path

import pytest


def mark_folder(conftest: str, items: list[pytest.Item], marker: pytest.MarkDecorator) -> None:
    """Add `marker` to every collected test under the folder of `conftest` (pass its `__file__`)."""
    here = Path(conftest).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(marker)


# Each names one thing a test needs that a fresh checkout has not (pyproject.toml describes them); a test that needs
# the plane and the test servers too is `cluster`, whose make target brings both.
PREREQUISITES = ("integration", "cluster", "images", "servers", "e2e", "helm")


def refuse_doubled(items: list[pytest.Item]) -> None:
    """Fail the session's collection when a test carries two prerequisite markers: call it last, from the
    conftests whose tests may be collected alone (tests/, e2e/)."""
    doubled = [
        f"{item.nodeid}: {', '.join(names)}"
        for item in items
        if len(names := sorted({m.name for m in item.iter_markers()} & set(PREREQUISITES))) > 1
    ]
    if doubled:
        raise pytest.UsageError("tests with more than one prerequisite marker:\n" + "\n".join(doubled))
