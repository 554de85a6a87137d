"""The e2e suite runs in one of two places:

- local (default, CI): the local control plane (`make cluster-up`). The chart is installed for real; kwok's
  nodes run no containers, so this machine runs the pods' containers: from the images `make images` built
  when VIF_IMAGES names them (`make test`, `make e2e`: buildah, the command, args, env, user and mounts of the
  Deployment), else as local processes from the checkout's venv. The operator gets the chart's ServiceAccount
  token, so the chart's RBAC is what it gets.
- kind (`make e2e-kind`, E2E_MODE=kind): a kind cluster with both images loaded; everything runs in pods
  and the Service is reached through `kubectl port-forward`.
"""

from __future__ import annotations

import os

import pytest

from helpers.markers import mark_folder, refuse_doubled

MODE = os.environ.get("E2E_MODE", "local")


# Not trylast: the folder's marker must be on its tests before `-m` deselects by markers (pytest's own hook).
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(__file__, items, pytest.mark.e2e)
    refuse_doubled(items)  # `pytest e2e` and `make chaos` do not load tests/conftest.py, which checks the rest
