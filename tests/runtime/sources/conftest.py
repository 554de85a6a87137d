"""Downloads from a real Hugging Face-compatible hub (olah) holding the default model's files: marked `servers`.
One hub for the session; each test adds the repositories it needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.hub_server import HubServer, running_hub
from helpers.markers import mark_folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(__file__, items, pytest.mark.servers)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    with running_hub(tmp_path_factory.mktemp("hub")) as server:
        yield server
