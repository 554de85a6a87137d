"""Router tests against the local control plane (`make cluster-up`); they fail loudly if it is not up."""

from __future__ import annotations

import pytest

from helpers.markers import mark_folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(__file__, items, pytest.mark.cluster)
