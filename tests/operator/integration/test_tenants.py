"""spec.tenants on the local plane, with the real operator, engine and router (docs/tenants.md): the pods the
operator describes take each tenant's key from its Secret, the router enforces the tenant's limits with OpenAI's
headers, and a key rotated in its Secret reaches the running router and replica without a restart."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from helpers.cluster import get, put, wait_for
from helpers.kubelet import Container, StandInKubelet, operating
from helpers.pods import PodAsProcess, cluster_volume_files, running
from helpers.runtime_process import MODEL

from .conftest import apply_model, model_manifest

SETTLE = 600  # bounded, not timed: the engine loads on a busy machine
LIVE = 60  # the kubelet's sync (here 2 s) plus the processes' --reload-interval (5 s), with room to spare
SPEC = {
    "model": {"path": "/models/SmolLM2-135M-Instruct"},
    "servedName": MODEL,
    "engine": {"maxModelLen": 2048, "extraArgs": ["--max-num-seqs", "4"]},
    "tenants": {
        "keys": [
            {"name": "search", "keySecret": {"name": "search-key"}, "requestsPerMinute": 2},
            {"name": "batch", "keySecret": {"name": "batch-key"}},
        ]
    },
}


def serving(kubelet: StandInKubelet) -> Container | None:
    running = kubelet.running()
    return running[0] if len(running) == 1 and running[0].answers_ready() else None


def status(base: str, key: str) -> int:
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 2}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{base}/v1/completions", json=body, headers=headers, timeout=120).status_code


def router_pod(deployment: dict[str, Any], replica: str) -> dict[str, Any]:
    """The router's Deployment as the operator wrote it, but for the replica here in place of the Service it
    would watch (the stand-in kubelet runs pods as local processes, outside the Service's EndpointSlices)."""
    pod = copy.deepcopy(deployment)
    container = pod["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    for flag in ("--service", "--service-port"):
        index = args.index(flag)
        del args[index : index + 2]
    container["args"] = [*args, "--endpoint", replica]
    return pod


def test_tenants_keys_and_limits_reach_the_router_and_the_replica_and_a_rotated_key_applies_live(
    namespace: str, tmp_path: Path
) -> None:
    put(namespace, "Secret", "search-key", {"token": "sk-search"})
    put(namespace, "Secret", "batch-key", {"token": "sk-batch"})
    with operating(namespace, tmp_path) as kubelet:
        apply_model(namespace, model_manifest("shared", SPEC))
        replica = wait_for(lambda: serving(kubelet), "the replica answering", SETTLE)
        assert (status(replica.url, "sk-search"), status(replica.url, "sk-other")) == (200, 401)

        deployment = wait_for(lambda: get("deployment", "shared-router", namespace), "the router's Deployment")
        runner = PodAsProcess(
            router_pod(deployment, replica.url), cluster_volume_files(deployment, namespace), tmp_path / "router"
        )
        with running(runner) as router:
            search = openai.OpenAI(base_url=f"{router}/v1", api_key="sk-search", max_retries=0, timeout=120)
            answers = [
                search.completions.with_raw_response.create(model=MODEL, prompt="Hi", max_tokens=2) for _ in range(2)
            ]
            with pytest.raises(openai.RateLimitError) as refused:
                search.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
            assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["1", "0"]
            assert refused.value.response.headers["x-ratelimit-limit-requests"] == "2"
            assert status(router, "sk-batch") == 200  # batch has no limit
            assert status(router, "sk-other") == 401

            put(namespace, "Secret", "batch-key", {"token": "sk-batch-2"})
            runner.write_volumes(cluster_volume_files(deployment, namespace))  # as the kubelet does
            wait_for(lambda: status(router, "sk-batch-2") == 200, "the rotated key accepted end to end", LIVE)
            assert status(router, "sk-batch") == 401 and status(replica.url, "sk-batch") == 401
            assert runner.log.read_text().count("live configuration") >= 1
        assert kubelet.running() == [replica] and replica.proc.poll() is None  # no restart
