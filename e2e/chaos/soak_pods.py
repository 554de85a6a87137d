"""`make soak MINUTES=30`: a steady load of streamed and whole chat requests through a model's two router pods for
that long, while every few minutes (`EVERY=`, seconds) one of its two replicas, picked at random, is deleted and
the ReplicaSet makes another. It prints the requests, the failures by cause, and each pod's memory after its
warm-up and at its end; it fails on any failed request, since a deleted pod drains what it holds first.

A pod is deleted only while both replicas serve: deleting the last one would measure the cold start, which the router
holds requests through (docs/autoscaling.md), not a soak."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from helpers.cluster import REPO, kubectl
from helpers.kubelet import MODEL_PODS, StandInKubelet, operating
from helpers.router_load import Outcome, SteadyLoad

from .model_pods import MANIFEST, WORKERS, RouterService, group_rss, of, serving, waiting

MINUTES = float(os.environ.get("VIF_SOAK_MINUTES", "30"))
EVERY = float(os.environ.get("VIF_SOAK_EVERY", "180"))
SAMPLE_EVERY = 15.0
WARM_UP = 120.0  # a pod's memory is compared from this long after it started: its engine and caches have filled
AIM = 0.05  # memory growth after warm-up


@dataclass
class Pod:
    name: str
    kind: str  # vif-router or vif-runtime
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since its first sample, RSS bytes)

    def warm(self) -> tuple[int, int] | None:
        """RSS at the first sample after warm-up and at the last, when it lived past warm-up."""
        start = self.samples[0][0]
        after = [rss for t, rss in self.samples if t - start >= WARM_UP]
        return (after[0], after[-1]) if len(after) >= 2 else None

    def lived(self) -> float:
        return self.samples[-1][0] - self.samples[0][0]


def cause(outcome: Outcome) -> str:
    """What a failed request died of: the error's code in an answer, else the client's exception."""
    try:
        error = json.loads(outcome.detail)["error"]
        return str(error.get("code") or error.get("type"))
    except (ValueError, KeyError, TypeError):
        return outcome.detail.split("(", 1)[0][:60] or "unknown"


def report(pods: dict[str, Pod], outcomes: list[Outcome], deleted: list[str], seed: int) -> list[str]:
    failed = Counter(cause(o) for o in outcomes if not o.ok)
    lines = [
        f"soak: {MINUTES:g} min, a replica deleted every {EVERY:g} s while both serve (seed {seed}): "
        f"{len(deleted)} deleted",
        f"requests: {len(outcomes)} sent, {sum(o.ok for o in outcomes)} answered, failed by cause: {dict(failed)}",
        "",
        f"| pod | kind | lived | RSS after {WARM_UP:g} s warm-up | RSS at end | growth |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for pod in pods.values():
        warm = pod.warm()
        cells = (f"{warm[0] / 2**20:.0f} MiB", f"{warm[1] / 2**20:.0f} MiB", f"{warm[1] / warm[0] - 1:+.1%}") if warm \
            else ("-", "-", "- (did not outlive its warm-up)")  # fmt: skip
        lines.append(f"| {pod.name} | {pod.kind} | {pod.lived() / 60:.1f} min | " + " | ".join(cells) + " |")
    for kind in ("vif-router", "vif-runtime"):
        growth = [w[1] / w[0] - 1 for p in pods.values() if p.kind == kind and (w := p.warm())]
        if growth:
            verdict = "met" if max(growth) < AIM else "missed"
            lines.append(f"{kind}: largest growth after warm-up {max(growth):+.1%} (aim < {AIM:.0%}: {verdict})")
    return lines


async def test_a_steady_load_through_replica_deletions(
    namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("VIF_SOAK_SEED", time.time_ns() % 100_000))
    pods: dict[str, Pod] = {}
    deleted: list[str] = []
    with operating(namespace, tmp_path, selector=MODEL_PODS, restart=True) as kubelet:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(MANIFEST))
        await waiting(lambda: serving(kubelet), "two routers routing to two replicas")
        with RouterService(kubelet) as service:
            await waiting(lambda: len(service()) == 2, "both routers in the Service")
            outcomes = await load_while_deleting(namespace, kubelet, service, pods, deleted, random.Random(seed))
        assert kubelet.error is None, repr(kubelet.error)

    lines = report(pods, outcomes, deleted, seed)
    results = REPO / "bench-results"
    results.mkdir(exist_ok=True)
    (results / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text("\n".join(lines) + "\n")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert deleted, "no replica was deleted: the soak ran shorter than EVERY"
    assert [o for o in outcomes if not o.ok] == [], lines[1]


async def load_while_deleting(
    namespace: str,
    kubelet: StandInKubelet,
    service: RouterService,
    pods: dict[str, Pod],
    deleted: list[str],
    pick: random.Random,
) -> list[Outcome]:
    """The load for MINUTES, each pod's memory sampled into `pods`, a replica deleted every EVERY seconds while
    both serve (its name added to `deleted`); the load's outcomes."""
    run = SteadyLoad(service, WORKERS)
    start = time.monotonic()
    due = start + EVERY
    try:
        while (now := time.monotonic()) - start < MINUTES * 60:
            for container in kubelet.running():
                kind = container.runner.container["command"][0]
                pod = pods.setdefault(container.name, Pod(container.name, kind))
                pod.samples.append((now - start, await asyncio.to_thread(group_rss, container.proc.pid)))
            whole = await asyncio.to_thread(serving, kubelet)
            if now >= due and whole is not None:
                victim = pick.choice(of(kubelet, "vif-runtime")).name
                await asyncio.to_thread(kubectl, "delete", "pod", "-n", namespace, victim, "--wait=false")
                deleted.append(victim)
                due = now + EVERY
            await asyncio.sleep(SAMPLE_EVERY)  # the soak's pace, not a wait for a state
    finally:
        outcomes = await run.stop()
    return outcomes
