"""Downloads from a real Hugging Face-compatible hub (olah) and a real S3-compatible store (moto), each holding
the default model's files: tests that use one are marked `servers`. One of each for the session; each test adds
the repositories or prefixes it needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.hub_server import HubServer, running_hub
from helpers.markers import mark_folder
from helpers.s3_server import S3Server, running_s3

SERVERS = {"hub", "store"}  # the fixtures that start one


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start a server are `servers` (unless they need the engine too: `integration` brings both); the
    rest here are unit tests."""
    starting = [
        i for i in items if SERVERS & set(getattr(i, "fixturenames", ())) and not i.get_closest_marker("integration")
    ]
    mark_folder(__file__, starting, pytest.mark.servers)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    with running_hub(tmp_path_factory.mktemp("hub")) as server:
        yield server


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server
