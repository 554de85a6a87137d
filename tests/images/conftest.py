"""The images `make images` built (make test-images, make test): a container of each per module, and the runtime
serving from its image's own command."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from helpers.cluster import wait_for
from helpers.images import BuiltImages, Container, require_images
from helpers.markers import mark_folder
from helpers.processes import free_port, stop_group


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(__file__, items, pytest.mark.images)


@pytest.fixture(scope="session")
def images() -> BuiltImages:
    return require_images()


@pytest.fixture(scope="module")
def runtime(images: BuiltImages) -> Iterator[Container]:
    with Container(images, images.runtime) as container:
        yield container


@pytest.fixture(scope="module")
def operator(images: BuiltImages) -> Iterator[Container]:
    with Container(images, images.operator) as container:
        yield container


@pytest.fixture(scope="module")
def serving(runtime: Container, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image's entry point and command, as its own user, with no environment nor mount added: only the address
    moves to a free port on loopback (the container shares the host's network)."""
    config = runtime.config()
    port = free_port()
    command = [*config["Entrypoint"], *config["Cmd"]]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    log = tmp_path_factory.mktemp("serving") / "serve.log"
    proc = subprocess.Popen(
        runtime.command(command), stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"vif-runtime serve exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{base}/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, "the image's vif-runtime serve to be ready", timeout=600)
        yield base
    finally:
        stop_group(proc)
