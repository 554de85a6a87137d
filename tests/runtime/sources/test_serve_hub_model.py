"""`vif-runtime serve ORG/NAME` as `vllm serve ORG/NAME` is used: the model is downloaded from the hub
(`HF_ENDPOINT`) into the local cache, then served under `--served-model-name`, with no model_config.json."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.hub_server import HubServer, model_files
from helpers.processes import stop_group
from helpers.runtime_process import start_runtime
from vif.runtime.sources.cache import COMPLETE

pytestmark = pytest.mark.integration
REPO = "vif-test/smollm2-135m-instruct"
SERVED = "smol"


@pytest.fixture(scope="module")
def served(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    hub.add_repo(REPO, model_files())
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "VIF_MODEL_CACHE": str(cache)}
    runtime = start_runtime(
        tmp_path_factory.mktemp("named"), "--max-model-len", "2048", env=env,
        model=(REPO, "--served-model-name", SERVED),
    )  # fmt: skip
    try:
        yield runtime.base_url, cache
    finally:
        stop_group(runtime.proc)


def test_the_hub_model_is_downloaded_and_served_under_the_given_name(served: tuple[str, Path], hub: HubServer) -> None:
    url, cache = served
    with httpx.Client(base_url=url, timeout=120) as client:
        models = client.get("/v1/models").json()
        body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
        answer = client.post("/v1/chat/completions", json={**body, "model": SERVED})
        other = client.post("/v1/chat/completions", json={**body, "model": REPO})
    assert [m["id"] for m in models["data"]] == [SERVED]
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == SERVED and answer.json()["choices"][0]["message"]["content"]
    assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"
    assert [p.parent.name for p in cache.rglob(COMPLETE)] and len(hub.file_requests(REPO)) == len(model_files())
