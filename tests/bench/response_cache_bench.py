"""The response cache: a load that repeats half of its questions, with the cache and without, on one server.

One vif server with the cache on serves every round twice: once as is, and once with every request sent
`Cache-Control: no-store` (no lookup, nothing stored: the engine answers everything, as with the cache off). The
order alternates every round, and each round asks questions of its own, so no round finds another's answers.
Each load: `--questions` distinct questions, each asked once more later in the load (so half the requests are
repeats), in a shuffled order, `--concurrency` at a time, temperature 0. A repeat sent while its first asking is
still with the engine is a miss too (the cache does not merge requests in flight), so hits can be fewer than the
repeats; the table says how many there were. Reported: the load's throughput with and without the cache (median
of each round's ratio), and the latency of hits and of engine answers (median, p99), medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from serving_bench import (
    BIN,
    RESULTS_DIR,
    Server,
    ServerNotReady,
    kv_cache_flags,
    log_tail,
    ratio,
    start_server,
    stop_server,
    wait_until_ready,
    warm_up,
)

TOPICS = ("rivers", "volcanoes", "bridges", "libraries", "deserts", "comets", "orchards", "harbours", "glaciers")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="model_config.json")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=64, help="distinct questions a load; each is asked twice")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=8100)
    return parser.parse_args()


@dataclass
class LoadResult:
    seconds: float = 0.0
    requests: int = 0
    failed: int = 0
    hit_ms: list[float] = field(default_factory=list)
    engine_ms: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Answered requests a second."""
        return (self.requests - self.failed) / self.seconds


def questions(round_index: int, count: int, seed: int) -> list[str]:
    """`count` distinct questions, each twice, shuffled so a repeat comes after its first asking."""
    asked = [
        f"Round {round_index}, question {i}: write two sentences about {TOPICS[i % len(TOPICS)]}." for i in range(count)
    ]
    rng = random.Random(seed)
    order = asked + asked
    rng.shuffle(order)
    return order


async def run_load(
    port: int, model: str, prompts: list[str], concurrency: int, max_tokens: int, cached: bool
) -> LoadResult:
    result = LoadResult(requests=len(prompts))
    headers = {} if cached else {"cache-control": "no-store"}
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:

        async def ask(prompt: str) -> None:
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                    "max_tokens": max_tokens}  # fmt: skip
            async with gate:
                start = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body, headers=headers)
                took = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                result.failed += 1
            elif response.headers.get("x-vif-cache") == "hit":
                result.hit_ms.append(took)
            else:
                result.engine_ms.append(took)

        start = time.perf_counter()
        await asyncio.gather(*(ask(p) for p in prompts))
        result.seconds = time.perf_counter() - start
    return result


def p99(values: list[float]) -> float | None:
    """Within the samples (inclusive): fewer than 100 of them would otherwise extrapolate past the largest."""
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def over_rounds(values: list[float | None]) -> float:
    """The median of the rounds that had a value."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else float("nan")


def main() -> int:
    args = parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    command = [str(BIN / "vif-runtime"), "serve", "--config", str(args.config), "--model-name", args.model_name,
               "--host", "127.0.0.1", "--port", str(args.port), *kv_cache_flags(args),
               "--response-cache-entries", "100000"]  # fmt: skip
    server = Server("vif", args.port, command, "/ready")
    log_path = RESULTS_DIR / f"response-cache-{stamp}.log"
    proc = start_server(server, log_path)
    rounds: list[dict[str, LoadResult]] = []
    try:
        wait_until_ready(server, proc)
        warm_up(server, args.model_name)
        for index in range(args.rounds):
            results: dict[str, LoadResult] = {}
            for cached in (True, False) if index % 2 == 0 else (False, True):
                # the same questions for both, told apart from every other load's by the round and the mode
                prompts = [f"[{'a' if cached else 'b'}] {q}" for q in questions(index, args.questions, seed=index)]
                results["cache" if cached else "no cache"] = asyncio.run(
                    run_load(args.port, args.model_name, prompts, args.concurrency, args.max_tokens, cached)
                )
            rounds.append(results)
            print(f"round {index + 1}: " + ", ".join(f"{k} {r.throughput:.2f} req/s" for k, r in results.items()))
    except ServerNotReady as error:
        print(f"ERROR: {error}; tail of {log_path}:\n{log_tail(log_path)}", file=sys.stderr)
        return 1
    finally:
        stop_server(proc)
    print_table(rounds, args)
    return 1 if any(r.failed for results in rounds for r in results.values()) else 0


def print_table(rounds: list[dict[str, LoadResult]], args: argparse.Namespace) -> None:
    print(f"\n{args.questions} questions asked twice each, concurrency {args.concurrency}, max_tokens {args.max_tokens},"
          f" {args.rounds} rounds (medians over rounds)")  # fmt: skip
    print("| | cache | no cache (no-store) | cache / no cache |")
    print("|---|---|---|---|")
    tput = {m: over_rounds([r[m].throughput for r in rounds]) for m in ("cache", "no cache")}
    gain = over_rounds([ratio(r["cache"].throughput, r["no cache"].throughput) for r in rounds])
    print(f"| throughput, req/s | {tput['cache']:.2f} | {tput['no cache']:.2f} | {gain:.2f} |")
    for label, pick in (("median", median), ("p99", p99)):
        hit = over_rounds([pick(r["cache"].hit_ms) for r in rounds])
        miss = over_rounds([pick(r["no cache"].engine_ms) for r in rounds])
        print(f"| {label} latency, ms: hit vs engine answer | {hit:.1f} | {miss:.1f} | {ratio(hit, miss):.3f} |")
    hits = [len(r["cache"].hit_ms) for r in rounds]
    failed = sum(r.failed for results in rounds for r in results.values())
    print(f"hits a round: {hits} of {2 * args.questions} requests; failed requests: {failed}")


if __name__ == "__main__":
    sys.exit(main())
