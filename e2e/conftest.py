"""The e2e suite runs in one of two places:

- local (default, CI): the local control plane (`make cluster-up`). The chart is installed for real; the
  operator runs as a local process with the chart's ServiceAccount token, so the chart's RBAC is what it
  gets; kwok's nodes run no containers, so the runtime pod's container runs as a local process.
- kind (`make e2e-kind`, E2E_MODE=kind): a kind cluster with both images loaded; everything runs in pods
  and the Service is reached through `kubectl port-forward`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MODE = os.environ.get("E2E_MODE", "local")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents or Path(item.path).parent == here:
            item.add_marker(pytest.mark.e2e)
