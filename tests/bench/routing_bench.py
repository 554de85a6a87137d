"""Routing benchmark: vif-router's strategies on two runtime replicas whose KV caches cannot both hold every prefix.

Workload (`--load prefix`, the default): vLLM's serving benchmark with its `prefix_repetition` dataset: `--num-prefixes` random prefixes of
`--prefix-len` tokens, each followed by random `--suffix-len`-token suffixes, `--output-len` tokens out (EOS
ignored), streaming `/v1/chat/completions` at `--concurrency` requests in flight, prompts shuffled. Chat, because
it is vif's main protocol and the router keys on the leading messages: the chat template's header is the same
for every prompt, so prompts that share a prefix text also share a token prefix, and whole 128-token blocks of it
hit vLLM's prefix cache (on by default in V1, also on CPU). `--load random`: its `random` dataset instead, prompts
of `--prefix-len` + `--suffix-len` random tokens that share nothing, so a strategy that wins on shared prefixes
and loses without them shows it.

Arms, each on fresh processes so every arm starts with empty caches (all arms of a round replay the same prompts
with the same seed; a warm cache would hand a later arm the earlier one's work):

- `prefix-hash`, `least-load`, `round-robin`: two `vif-runtime serve` replicas, pinned to one core each
  (`taskset -c 0`, `-c 1`), behind `vif-router --strategy S`. Each replica's KV cache holds `--cache-share` of the
  distinct prefixes plus room for the suffixes and outputs of its half of the requests in flight, so a replica
  that sees every prefix (round robin, least load) keeps evicting them, while one that sees only its own share
  (prefix-hash) can keep them.
- `kv-aware`: the same, behind `vif-router --strategy kv-aware`, which follows the replicas' KV cache events.
- `vllm-cache-aware`, `vllm-kv-aware`: the same two replicas behind vLLM's own router (`vllm-router`, Rust, from its
  venv under ~/.cache/vif/tools, `make test-servers`) with `--policy cache_aware` (an approximate radix tree of what
  each worker has seen) and `--policy kv_aware` (the replicas' KV cache events): what a user would pick instead of
  vif-router. Every replica of every arm publishes its KV cache events (on its port + `EVENTS_OFFSET`), so the
  engines are configured alike whichever router listens.
- `direct` and `routed-1`: one replica on core 0, with a KV cache that holds every prefix, so the workload is as
  cheap as it gets and the router's own cost shows most: the benchmark straight to the replica, then through a
  round-robin router with that single endpoint. The router and this client share the other core.

The order of the arms reverses every round, so slow drift of a shared machine does not favour one arm; every
round draws a new seed. Printed: medians over rounds of request throughput, output tokens/s, median TTFT and
the replicas' prefix-cache hit rate (vLLM's own counters), and the medians of per-round ratios against
round-robin and of routed-1 against direct. Raw numbers go to bench-results/routing-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine_metrics import scrape, total
from serving_bench import (
    BIN,
    KEPT_KEYS,
    RESULTS_DIR,
    Server,
    ServerNotReady,
    load_model_entry,
    log_tail,
    ratio,
    report_failures,
    start_server,
    stop_server,
    wait_until_ready,
    warm_up,
)
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser

from vif.runtime.engine.kv_cache import read_model_facts

BLOCK_TOKENS = 128  # vLLM's CPU block size: prefix caching works in whole blocks
ROUTER_READY_TIMEOUT_S = 30.0
EVENTS_OFFSET = 100  # a replica publishes its KV cache events on its HTTP port plus this


VLLM_ROUTER = Path.home() / ".cache/vif/tools/vllm-router-0.1.17/bin/vllm-router"


@dataclass(frozen=True)
class Arm:
    """One configuration measured per round: how many replicas, and the router's strategy (None: no router);
    `vllm`: vLLM's router with that policy instead of vif-router."""

    name: str
    replicas: int
    strategy: str | None
    vllm: bool = False


ARMS = (
    Arm("prefix-hash", 2, "prefix-hash"),
    Arm("least-load", 2, "least-load"),
    Arm("kv-aware", 2, "kv-aware"),
    Arm("round-robin", 2, "round-robin"),
    Arm("vllm-cache-aware", 2, "cache_aware", vllm=True),
    Arm("vllm-kv-aware", 2, "kv_aware", vllm=True),
    Arm("direct", 1, None),
    Arm("routed-1", 1, "round-robin"),
)
COLUMNS = {"request_throughput": "req/s", "output_throughput": "out tok/s", "median_ttft_ms": "TTFT ms"}
COLUMNS |= {"p99_ttft_ms": "p99 TTFT", "cache_hit_rate": "cache hit"}
RATIOS = (("prefix-hash", "round-robin"), ("kv-aware", "round-robin"), ("least-load", "round-robin"))
RATIOS += tuple(
    (ours, theirs) for ours in ("prefix-hash", "kv-aware") for theirs in ("vllm-cache-aware", "vllm-kv-aware")
)
RATIOS += (("routed-1", "direct"),)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="model_config.json")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", choices=["prefix", "random"], default="prefix", help="shared prefixes, or none")
    parser.add_argument("--num-prompts", type=int, default=80)
    parser.add_argument("--num-prefixes", type=int, default=8)
    parser.add_argument("--prefix-len", type=int, default=512, help="tokens shared by a prefix's prompts")
    parser.add_argument("--suffix-len", type=int, default=32, help="tokens of each prompt's own")
    parser.add_argument("--output-len", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-num-seqs", type=int, default=16, help="each replica's batch")
    parser.add_argument("--cache-share", type=float, default=0.5, help="of the prefixes a small KV cache holds")
    parser.add_argument("--load-factor", type=float, help="prefix-hash's load bound factor (the router's default)")
    parser.add_argument("--arms", nargs="+", choices=[a.name for a in ARMS], default=[a.name for a in ARMS])
    parser.add_argument("--base-port", type=int, default=8300, help="replicas on this and the next, router +10")
    parser.add_argument("--quick", action="store_true", help="1 round of 64 prompts")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.num_prompts = 1, 64
    return args


def kv_cache_bytes(args: argparse.Namespace, model_dir: Path, prefixes: float, replicas: int) -> int:
    """A replica's KV cache: `prefixes` of the shared prefixes, plus the blocks of suffix and output of its share of
    the requests in flight, and never less than one full-length sequence, which vLLM requires."""
    per_token = read_model_facts(model_dir, "float32", "auto").bytes_per_token
    in_flight = math.ceil(args.concurrency / replicas)
    own_blocks = math.ceil((args.suffix_len + args.output_len) / BLOCK_TOKENS)
    tokens = math.ceil(prefixes * args.prefix_len) + in_flight * own_blocks * BLOCK_TOKENS
    return max(tokens, load_model_entry(args.config, args.model_name)[1]["max_model_len"]) * per_token


def replica(index: int, port: int, kv_bytes: int, args: argparse.Namespace) -> Server:
    """`vif-runtime serve` pinned to core `index` (vLLM's engine process inherits the affinity, and its OpenMP
    threads bind to the cores it is allowed)."""
    command = ["taskset", "-c", str(index), str(BIN / "vif-runtime"), "serve", "--config", str(args.config)]
    command += ["--model-name", args.model_name, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--kv-cache-memory-bytes", str(kv_bytes), "--max-num-seqs", str(args.max_num_seqs)]
    events = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{port + EVENTS_OFFSET}"}
    command += ["--kv-events-config", json.dumps(events)]
    return Server(f"replica{index}", port, command, "/ready")


def router(port: int, arm: Arm, replica_ports: list[int], args: argparse.Namespace) -> Server:
    if arm.vllm:
        command = [str(VLLM_ROUTER), "--host", "127.0.0.1", "--port", str(port), "--policy", str(arm.strategy)]
        command += ["--prometheus-host", "127.0.0.1", "--prometheus-port", str(port + 1), "--log-level", "warning"]
        command += ["--worker-urls", *(f"http://127.0.0.1:{replica_port}" for replica_port in replica_ports)]
        if arm.strategy == "kv_aware":
            for replica_port in replica_ports:
                source = f"http://127.0.0.1:{replica_port}=tcp://127.0.0.1:{replica_port + EVENTS_OFFSET}"
                command += ["--kv-event-source", source]
            model_dir, _ = load_model_entry(args.config, args.model_name)  # its tokenizer and chat template
            command += ["--kv-event-block-size", str(BLOCK_TOKENS), "--kv-event-model", str(model_dir)]
        return Server("vllm-router", port, command, "/health")  # it starts once every worker answers /health
    command = [str(BIN / "vif-router"), "--host", "127.0.0.1", "--port", str(port), "--strategy", str(arm.strategy)]
    command += ["--model-name", args.model_name, "--log-level", "warning"]
    if args.load_factor is not None:
        command += ["--load-factor", str(args.load_factor)]
    if arm.strategy == "kv-aware":
        command += ["--kv-events-port-offset", str(EVENTS_OFFSET)]
    for replica_port in replica_ports:
        command += ["--endpoint", f"http://127.0.0.1:{replica_port}"]
    return Server("router", port, command, "/ready")


def wait_for_endpoints(server: Server, count: int) -> None:
    """Until the router has found every replica ready: its /ready needs only one, and the first requests of the
    run would all go to that one."""
    deadline = time.monotonic() + ROUTER_READY_TIMEOUT_S
    while total(scrape(server.port), "vif_router_endpoint_ready") < count:
        if time.monotonic() > deadline:
            raise ServerNotReady(f"the router did not find {count} ready replicas in {ROUTER_READY_TIMEOUT_S:.0f} s")
        time.sleep(0.2)


def replica_stats(port: int) -> dict[str, float]:
    """Requests the replica answered and its prefix cache's hit rate (vLLM counts both in prompt tokens)."""
    samples = scrape(port)
    queries = total(samples, "vllm:prefix_cache_queries_total")
    hits = total(samples, "vllm:prefix_cache_hits_total")
    return {"requests": total(samples, "vif_requests_total"), "cache_queries": queries, "cache_hits": hits}


def routing_outcomes(port: int) -> dict[str, float]:
    samples = scrape(port)
    return {labels["outcome"]: value for name, labels, value in samples if name == "vif_router_routing_decisions_total"}


def run_prefix_benchmark(port: int, args: argparse.Namespace, model_dir: Path, seed: int) -> dict[str, Any]:
    """vLLM's serving benchmark with the prefix_repetition dataset against one address."""
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = ["--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--model", args.model_name]
    argv += ["--base-url", f"http://127.0.0.1:{port}", "--tokenizer", str(model_dir)]
    if args.load == "prefix":
        argv += ["--dataset-name", "prefix_repetition", "--prefix-repetition-num-prefixes", str(args.num_prefixes)]
        argv += ["--prefix-repetition-prefix-len", str(args.prefix_len)]
        argv += ["--prefix-repetition-suffix-len", str(args.suffix_len)]
        argv += ["--prefix-repetition-output-len", str(args.output_len), "--ignore-eos"]
    else:
        argv += ["--dataset-name", "random", "--random-input-len", str(args.prefix_len + args.suffix_len)]
        argv += ["--random-output-len", str(args.output_len), "--ignore-eos"]
    argv += ["--max-concurrency", str(args.concurrency), "--num-prompts", str(args.num_prompts)]
    argv += ["--seed", str(seed), "--disable-tqdm", "--percentile-metrics", "ttft,tpot,itl,e2el"]
    argv += ["--save-detailed"]  # keeps per-request errors in the result
    result = main(parser.parse_args(argv))
    summary = {key: result.get(key) for key in KEPT_KEYS}
    summary["errors"] = sorted({error for error in result.get("errors", []) if error})
    return summary


def run_arm(arm: Arm, args: argparse.Namespace, model_dir: Path, seed: int, log_stem: str) -> dict[str, Any]:
    """Fresh replicas (and router), warmed up with a short prompt each, then the benchmark; everything stopped."""
    prefixes = args.cache_share * args.num_prefixes if arm.replicas > 1 else 3.0 * args.num_prefixes
    kv_bytes = kv_cache_bytes(args, model_dir, prefixes, arm.replicas)
    replicas = [replica(i, args.base_port + i, kv_bytes, args) for i in range(arm.replicas)]
    front = router(args.base_port + 10, arm, [r.port for r in replicas], args) if arm.strategy else None
    running: list[tuple[Server, subprocess.Popen[bytes], Path]] = []
    try:
        started = time.monotonic()
        for server in replicas:  # started together: each has its own core
            log_path = Path(f"{log_stem}-{server.name}.log")
            running.append((server, start_server(server, log_path), log_path))
        for server, proc, _ in running:
            wait_until_ready(server, proc)
        startup_s = time.monotonic() - started
        for server in replicas:
            warm_up(server, args.model_name)
        target = replicas[0]
        if front is not None:
            log_path = Path(f"{log_stem}-router.log")
            running.append((front, start_server(front, log_path), log_path))
            wait_until_ready(front, running[-1][1])
            if not arm.vllm:
                wait_for_endpoints(front, arm.replicas)
            warm_up(front, args.model_name)
            target = front
        result = {"seed": seed, "startup_s": round(startup_s, 1), "kv_cache_bytes": kv_bytes}
        result |= run_prefix_benchmark(target.port, args, model_dir, seed)
        result["replicas"] = [replica_stats(server.port) for server in replicas]
        queries = sum(r["cache_queries"] for r in result["replicas"])
        result["cache_hit_rate"] = sum(r["cache_hits"] for r in result["replicas"]) / queries if queries else 0.0
        if front is not None and not arm.vllm:
            result["routing"] = routing_outcomes(front.port)
        return result
    except ServerNotReady:
        for server, _, log_path in running:
            print(f"--- tail of {server.name}'s log {log_path}:\n{log_tail(log_path)}", file=sys.stderr)
        raise
    finally:
        for _, proc, _ in reversed(running):
            stop_server(proc)


def median_ratio(rounds: list[dict[str, dict[str, Any]]], ours: str, theirs: str, key: str) -> float:
    return statistics.median(ratio(r[ours][key], r[theirs][key]) for r in rounds)


def print_table(rounds: list[dict[str, dict[str, Any]]]) -> None:
    names = list(rounds[0])
    header = f"{'':<17}" + "".join(f"{label:>11}" for label in COLUMNS.values()) + f"{'failed':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for name in names:
        cells = "".join(f"{statistics.median(r[name][key] for r in rounds):>11.2f}" for key in COLUMNS)
        print(f"{name:<17}{cells}{sum(r[name]['failed'] for r in rounds):>8}")
    print()
    for ours, theirs in RATIOS:
        if ours in names and theirs in names:
            cells = "".join(
                f"{median_ratio(rounds, ours, theirs, key):>11.3f}" for key in COLUMNS if key != "cache_hit_rate"
            )
            print(f"{ours + '/' + theirs:<30}{cells}")
    print(f"\nmedians over {len(rounds)} round(s); ratios are medians of per-round ratios (req/s, tok/s: higher is")
    print("better; TTFT: lower is better). Aims: vif's default against round-robin TTFT <= 0.4 and req/s >= 1.6;")
    print("against the best vllm-router arm TTFT <= 0.8 and req/s >= 1.1 (random load: <= 1.0, >= 1.0);")
    print("routed-1/direct req/s >= 0.97.")


def main_bench() -> int:
    args = parse_args()
    model_dir, _ = load_model_entry(args.config, args.model_name)
    arms = [arm for arm in ARMS if arm.name in args.arms]
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    rounds: list[dict[str, dict[str, Any]]] = []
    for index in range(args.rounds):
        seed = random.SystemRandom().randrange(2**31)
        results: dict[str, dict[str, Any]] = {}
        for arm in arms if index % 2 == 0 else arms[::-1]:
            log_stem = str(RESULTS_DIR / f"routing-{stamp}-round{index + 1}-{arm.name}")
            print(f"\n=== round {index + 1}/{args.rounds}: {arm.name} (seed {seed}, logs {log_stem}-*) ===", flush=True)
            try:
                results[arm.name] = run_arm(arm, args, model_dir, seed, log_stem)
            except ServerNotReady as error:
                print(f"ERROR: {error}", file=sys.stderr)
                return 1
            print(f"  replicas: {results[arm.name]['replicas']}; routing: {results[arm.name].get('routing')}")
        rounds.append({arm.name: results[arm.name] for arm in arms})
    out_path = RESULTS_DIR / f"routing-{stamp}.json"
    meta = {key: value for key, value in vars(args).items() if key not in ("config", "quick")}
    out_path.write_text(
        json.dumps({**meta, "wall_s": round(time.monotonic() - started), "rounds": rounds}, indent=2) + "\n"
    )
    print_table(rounds)
    print(f"raw per-round numbers: {out_path}; wall time {(time.monotonic() - started) / 60:.1f} min")
    return report_failures({f"round {i + 1} {arm}": r for i, rnd in enumerate(rounds) for arm, r in rnd.items()})


if __name__ == "__main__":
    sys.exit(main_bench())
