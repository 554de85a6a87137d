"""What every test needs is one marker, or none: `make unit` runs the tests that need nothing, on a fresh checkout."""

from __future__ import annotations

import pytest

# Each names one thing a test needs that a fresh checkout has not (pyproject.toml describes them); a test that needs
# the plane and the test servers too is `cluster`, whose make target brings both.
PREREQUISITES = ("integration", "cluster", "images", "servers", "e2e", "helm")


@pytest.hookimpl(trylast=True)  # after the folders' conftests have marked their tests
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    doubled = [
        f"{item.nodeid}: {', '.join(names)}"
        for item in items
        if len(names := sorted({m.name for m in item.iter_markers()} & set(PREREQUISITES))) > 1
    ]
    if doubled:
        raise pytest.UsageError("tests with more than one prerequisite marker:\n" + "\n".join(doubled))
