"""The parsed Dockerfiles, shared by the image tests."""

from __future__ import annotations

import pytest

from helpers.dockerfiles import OPERATOR_DOCKERFILE, RUNTIME_DOCKERFILE, Stage, parse


@pytest.fixture(scope="module")
def runtime_stages() -> list[Stage]:
    return parse(RUNTIME_DOCKERFILE)


@pytest.fixture(scope="module")
def operator_stages() -> list[Stage]:
    return parse(OPERATOR_DOCKERFILE)
