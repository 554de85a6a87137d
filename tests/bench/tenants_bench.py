"""Tenants benchmark: does a quiet tenant keep its latency while a busy one floods the same model?

Two `vif-runtime serve` replicas, pinned to one core each, behind one `vif-router` with two tenants (`quiet`,
`busy`, no limits). Open-loop load, Poisson arrivals: `quiet` sends `--rate` streamed chat requests a second,
`busy` ten times as many, more than the two replicas serve, so requests wait somewhere. Each request asks for
`--output-len` tokens with EOS ignored, on a prompt of random words.

Arms, each on fresh processes:
- `fcfs`: the router forwards everything at once (`--max-in-flight-per-replica 0`); requests wait inside vLLM,
  first come first served.
- `fair`: the router lets `--max-num-seqs` requests run on each replica and holds the rest in its fair queue,
  which serves the tenant with the fewest tokens served first (runtime/router/fair_queue.py).

Each arm runs the quiet tenant alone, then both together, for `--duration` seconds each, each phase through a
router of its own (requests still running at the end are awaited; those refused, by the router or by a replica
at its concurrency limit, count as failed). Printed per arm: the quiet tenant's median
and p99 time to first token alone and together, and their ratio (the aim: p99 together within 1.5x of alone),
and the busy tenant's completed requests per second together (the capacity left to it). Raw numbers go to
bench-results/tenants-<time>.json.

    python tests/bench/tenants_bench.py --config runtime/conf/model_config.json --model-name smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from routing_bench import wait_for_endpoints
from serving_bench import BIN, RESULTS_DIR, Server, log_tail, start_server, stop_server, wait_until_ready

KEYS = {"quiet": "sk-quiet", "busy": "sk-busy"}
WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not")


@dataclass
class Sample:
    tenant: str
    ttft: float | None = None  # seconds to the first content event; None: failed
    status: int = 0


@dataclass
class Phase:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    def ttfts(self, tenant: str) -> list[float]:
        return sorted(s.ttft for s in self.samples if s.tenant == tenant and s.ttft is not None)

    def summary(self, tenant: str) -> dict[str, float]:
        ttfts = self.ttfts(tenant)
        sent = [s for s in self.samples if s.tenant == tenant]
        if not ttfts:
            return {"sent": len(sent), "completed": 0, "failed": len(sent)}
        return {
            "sent": len(sent),
            "completed": len(ttfts),
            "failed": len(sent) - len(ttfts),
            "median_ttft_ms": statistics.median(ttfts) * 1000,
            "p99_ttft_ms": ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))] * 1000,
            "req_per_s": len(ttfts) / self.seconds,
        }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="model_config.json")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--rate", type=float, default=0.5, help="the quiet tenant's requests a second (busy: 10x)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals in each phase")
    parser.add_argument("--prompt-words", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--max-num-seqs", type=int, default=4, help="each replica's batch, and the fair arm's places")
    parser.add_argument("--arms", nargs="+", choices=["fcfs", "fair"], default=["fcfs", "fair"])
    parser.add_argument("--base-port", type=int, default=8400, help="replicas on this and the next, router +10")
    return parser.parse_args()


async def one_request(client: httpx.AsyncClient, tenant: str, model: str, args: argparse.Namespace) -> Sample:
    prompt = " ".join(random.choices(WORDS, k=args.prompt_words))
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True,
            "max_tokens": args.output_len, "ignore_eos": True}  # fmt: skip
    sample = Sample(tenant)
    start = time.monotonic()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {KEYS[tenant]}"}) as response:  # fmt: skip
            sample.status = response.status_code
            if response.status_code != 200:
                return sample
            first = None
            async for line in response.aiter_lines():
                if first is None and line.startswith("data: {") and '"content"' in line:
                    first = time.monotonic() - start
            sample.ttft = first
    except httpx.HTTPError:
        sample.status = -1
    return sample


async def drive(url: str, model: str, rates: dict[str, float], args: argparse.Namespace, seed: int) -> Phase:
    """Poisson arrivals per tenant for `--duration` seconds; every request is awaited."""
    rng = random.Random(seed)
    phase = Phase()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        tasks: list[asyncio.Task[Sample]] = []

        async def arrivals(tenant: str, rate: float) -> None:
            end = time.monotonic() + args.duration
            while (now := time.monotonic()) < end:
                tasks.append(asyncio.create_task(one_request(client, tenant, model, args)))
                await asyncio.sleep(min(rng.expovariate(rate), end - now))

        start = time.monotonic()
        await asyncio.gather(*(arrivals(t, r) for t, r in rates.items()))
        phase.samples = list(await asyncio.gather(*tasks))
        phase.seconds = time.monotonic() - start
    return phase


def write_tenants(folder: Path) -> Path:
    path = folder / "tenants.json"
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in KEYS.items():
        (folder / name).write_text(key)
    path.write_text(json.dumps({"tenants": [{"name": n, "keyFile": n} for n in KEYS]}))
    return path


def replica(core: int, port: int, args: argparse.Namespace) -> Server:
    command = ["taskset", "-c", str(core), str(BIN / "vif-runtime"), "serve", "--config", str(args.config)]
    command += ["--model-name", args.model_name, "--port", str(port), "--max-num-seqs", str(args.max_num_seqs)]
    return Server(f"replica{core}", port, command, "/ready")


def router_server(arm: str, args: argparse.Namespace, logs: Path, ports: list[int]) -> Server:
    per_replica = args.max_num_seqs if arm == "fair" else 0
    return Server("router", args.base_port + 10, [
        str(BIN / "vif-router"), "--port", str(args.base_port + 10), "--strategy", "least-load",
        "--tenants-file", str(write_tenants(logs / "tenants")), "--max-in-flight-per-replica", str(per_replica),
        "--max-wait", "600", "--max-pending", "100000", "--log-level", "warning",
        *(a for port in ports for a in ("--endpoint", f"http://127.0.0.1:{port}")),
    ], "/ready")  # fmt: skip


def phase(arm: str, name: str, rates: dict[str, float], args: argparse.Namespace, logs: Path, seed: int) -> Phase:
    """One phase through a router of its own: its fair queue starts with no tenant's past, so the phase before
    does not weigh on this one (docs/tenants.md: what a tenant was served fades over a minute)."""
    ports = [args.base_port, args.base_port + 1]
    router = router_server(arm, args, logs, ports)
    log = logs / f"{arm}-router-{name}.log"
    proc = start_server(router, log)
    try:
        wait_until_ready(router, proc)
        wait_for_endpoints(router, 2)
        return asyncio.run(drive(f"http://127.0.0.1:{router.port}", args.model_name, rates, args, seed))
    except Exception:
        print(f"--- router\n{log_tail(log)}", file=sys.stderr)
        raise
    finally:
        stop_server(proc)


def run_arm(arm: str, args: argparse.Namespace, logs: Path, seed: int) -> dict[str, Any]:
    """Fresh replicas for the arm (warmed up once), a fresh router for each phase."""
    replicas = [replica(i, port, args) for i, port in enumerate([args.base_port, args.base_port + 1])]
    procs = {s.name: start_server(s, logs / f"{arm}-{s.name}.log") for s in replicas}
    try:
        for server in replicas:
            wait_until_ready(server, procs[server.name])
            body = {"model": args.model_name, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
            httpx.post(f"http://127.0.0.1:{server.port}/v1/chat/completions", json=body, timeout=120).raise_for_status()
        alone = phase(arm, "alone", {"quiet": args.rate}, args, logs, seed)
        together = phase(arm, "together", {"quiet": args.rate, "busy": 10 * args.rate}, args, logs, seed)
    except Exception:
        for name in procs:
            print(f"--- {name}\n{log_tail(logs / f'{arm}-{name}.log')}", file=sys.stderr)
        raise
    finally:
        for proc in procs.values():
            stop_server(proc)
    return {
        "quiet_alone": alone.summary("quiet"),
        "quiet_together": together.summary("quiet"),
        "busy_together": together.summary("busy"),
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'arm':6} {'quiet alone p50/p99 ms':>24} {'together p50/p99 ms':>22} {'p99 x':>7} {'busy req/s':>11}"
          f" {'failed q/b':>11}")  # fmt: skip
    for arm, r in results.items():
        alone, together, busy = r["quiet_alone"], r["quiet_together"], r["busy_together"]
        p99_ratio = together.get("p99_ttft_ms", float("nan")) / alone.get("p99_ttft_ms", float("nan"))
        print(f"{arm:6} {alone.get('median_ttft_ms', 0):11.0f}/{alone.get('p99_ttft_ms', 0):<12.0f}"
              f" {together.get('median_ttft_ms', 0):10.0f}/{together.get('p99_ttft_ms', 0):<11.0f}"
              f" {p99_ratio:7.2f} {busy.get('req_per_s', 0):11.2f} {together['failed']:>5}/{busy['failed']:<5}")  # fmt: skip


def main() -> int:
    args = parse_args()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = RESULTS_DIR / f"tenants-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    seed = random.randrange(1 << 30)
    results = {arm: run_arm(arm, args, logs, seed) for arm in args.arms}
    (RESULTS_DIR / f"tenants-{stamp}.json").write_text(json.dumps({"args": vars(args) | {"config": str(args.config)},
                                                                  "seed": seed, "results": results}, indent=2))  # fmt: skip
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
