"""`kv-aware` routing on two real replicas that publish their KV cache events (vLLM's `--kv-events-config`): a
prompt follows the replica that holds it once its first replica has evicted it, where `prefix-hash` alone would
send it back to its first replica."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import zmq

from helpers.exposition import metric
from helpers.processes import free_port, stop_group
from helpers.router_process import running_router
from helpers.runtime_process import MODEL, RuntimeProcess, start_runtime
from helpers.waits import wait_for

# Each replica publishes on its HTTP port plus this (the router's --kv-events-port-offset): below the ephemeral
# range that free ports come from.
OFFSET = -20_000
# About 33 blocks of 128 tokens of SmolLM2-135M's (float32): five prompts of 7 blocks evict the first one.
KV_CACHE_BYTES = 200_000_000


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))  # vLLM binds its events on every address
        except OSError:
            return False
    return True


def http_port() -> int:
    """A free port whose events port is free too."""
    return next(port for port in iter(free_port, None) if port + OFFSET > 1024 and port_is_free(port + OFFSET))


@pytest.fixture(scope="module")
def kv_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RuntimeProcess]]:
    def start(core: int) -> RuntimeProcess:
        port = http_port()
        events = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{port + OFFSET}"}
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": str(core % (os.cpu_count() or 1))}
        args = ("--max-num-seqs", "4", "--kv-cache-memory-bytes", str(KV_CACHE_BYTES))
        return start_runtime(
            tmp_path_factory.mktemp(f"kv{core}"), *args, "--kv-events-config", json.dumps(events), env=env, port=port
        )

    with ThreadPoolExecutor(2) as pool:
        started = [f.result() for f in [pool.submit(start, core) for core in (0, 1)]]
    yield started
    for replica in started:
        stop_group(replica.proc, grace=30)


class LastBatch:
    """The sequence number of the last KV event batch a replica published, as a subscriber of the test's own
    sees it: the router has caught up with a replica once it applied that batch."""

    def __init__(self, context: zmq.Context, base_url: str) -> None:
        self.socket = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(f"tcp://127.0.0.1:{int(base_url.rsplit(':', 1)[1]) + OFFSET}")
        self.last: int | None = None

    def read(self) -> int | None:
        while self.socket.poll(0):
            self.last = int.from_bytes(self.socket.recv_multipart()[1], "big")
        return self.last


def chat(base_url: str, topic: str, nonce: str, question: str = "What comes next?") -> None:
    """A chat whose system prompt (about 900 tokens, 7 full blocks) is `topic`'s own, led by the test's `nonce`:
    the replicas live for the module, and a prompt they cached before would publish no event now."""
    system = nonce + " " + " ".join(f"{topic}{i}" for i in range(250))
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    response = httpx.post(
        f"{base_url}/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 2}, timeout=120
    )
    assert response.status_code == 200, response.text


def scrape(base_url: str) -> str:
    return httpx.get(f"{base_url}/metrics", timeout=10).text


def served(replica: RuntimeProcess) -> float:
    return metric(scrape(replica.base_url), "vif_requests_total")


def test_a_prompt_follows_the_replica_that_still_holds_it(kv_replicas: list[RuntimeProcess], tmp_path: Path) -> None:
    context = zmq.Context()
    published = {r.base_url: LastBatch(context, r.base_url) for r in kv_replicas}
    endpoints = [a for r in kv_replicas for a in ("--endpoint", r.base_url)]
    try:
        with running_router(
            tmp_path, "--strategy", "kv-aware", f"--kv-events-port-offset={OFFSET}", "--model-name", MODEL, *endpoints
        ) as router:
            wait_for(lambda: metric(scrape(router), "vif_router_endpoint_ready") == 2, "the router to route to both")
            before = {r.base_url: served(r) for r in kv_replicas}
            nonce = uuid.uuid4().hex[:6]  # leads every prompt, so every block of this test's prompts is new
            chat(router, "story", nonce)
            first, other = sorted(kv_replicas, key=lambda r: served(r) - before[r.base_url], reverse=True)
            chat(other.base_url, "story", nonce)  # the other replica holds the story's prompt too
            for topic in ("e1", "e2", "e3", "e4", "e5"):
                chat(first.base_url, topic, nonce)  # and the first one evicts it

            def caught_up() -> bool:
                text = scrape(router)
                last = {url: batch.read() for url, batch in published.items()}
                assert None not in last.values(), f"the replicas' events were not seen: {last}"
                return all(metric(text, "vif_router_kv_events_sequence", endpoint=u) >= n for u, n in last.items())

            wait_for(caught_up, "the router to apply every KV event batch the replicas published", timeout=30)
            before = {r.base_url: served(r) for r in kv_replicas}
            hits = metric(scrape(other.base_url), "vllm:prefix_cache_hits_total")
            chat(router, "story", nonce, "And then?")
            decisions = scrape(router)
    finally:
        for batch in published.values():
            batch.socket.close(linger=0)
        context.term()
    assert {r.base_url: served(r) - before[r.base_url] for r in kv_replicas} == {first.base_url: 0, other.base_url: 1}
    assert metric(decisions, "vif_router_routing_decisions_total", strategy="kv-aware", outcome="cached") == 1
    assert metric(scrape(other.base_url), "vllm:prefix_cache_hits_total") - hits >= 7 * 128
