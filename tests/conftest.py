"""What every test needs is one marker, or none: `make unit` runs the tests that need nothing, on a fresh checkout."""

from __future__ import annotations

import pytest

from helpers.markers import refuse_doubled


@pytest.hookimpl(trylast=True)  # after the folders' conftests have marked their tests
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    refuse_doubled(items)
