"""Serving benchmark: the vif runtime against vLLM's own OpenAI server, same model, same engine settings.

Both servers are driven by vLLM's serving benchmark (random prompts, EOS ignored, bounded concurrency,
streaming /v1/chat/completions) on three loads: the everyday one (128 tokens in, 64 out, 16 in flight), one
where the front end is the limit (128 in, 2 out, 64 in flight: short answers to many clients) and one with long
prompts (1,024 in, 16 out, 32 in flight). They are compared on request and output token throughput, median and
p99 time to first token and median inter-token latency.

Machines are shared and noisy, so only one server runs at a time, each run gets a fresh server, and the
order alternates across rounds (vif first in odd rounds, vLLM first in even ones) so that slow drift in
the machine's load does not always favour the same server. Each round uses a new random seed, the same
for both servers, so neither reuses prompts it has already cached. The reported numbers are medians over
rounds; the ratios are medians of the per-round vif/vLLM ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine_metrics import engine_counters, engine_summary
from process_cpu import cpu_seconds
from process_group import stop_process_group
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser

from vif.runtime.config import load_model
from vif.runtime.engine.args import build_engine_args

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "bench-results"
BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
KEPT_KEYS = ("duration", "completed", "failed", "total_output_tokens", "request_throughput", "output_throughput")
KEPT_KEYS += ("median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "median_itl_ms", "p99_itl_ms", "mean_e2el_ms")
COLUMNS = {"request_throughput": "req/s", "output_throughput": "out tok/s", "median_ttft_ms": "TTFT ms"}
COLUMNS |= {"p99_ttft_ms": "p99 TTFT", "median_itl_ms": "ITL ms"}
COLUMNS |= {"api_cpu_ms": "API CPU/req", "engine_cpu_ms": "core CPU/req"}  # CPU ms per completed request
COLUMNS |= {"engine_steps": "steps", "step_ms": "step ms", "tokens_per_step": "tok/step"}  # engine_metrics.py
COLUMNS |= {"front_ms": "front ms"}  # the client's mean latency minus the engine's: the front end's share
COLUMNS |= {"worker_busy_pct": "worker busy%", "worker_wait_pct": "worker wait%"}  # of the load's time


@dataclass(frozen=True)
class Load:
    name: str
    input_len: int
    output_len: int
    concurrency: int
    num_prompts: int


LOADS = (
    Load("everyday", 128, 64, 16, 64),
    Load("front-end", 128, 2, 64, 256),
    Load("long-prompt", 1024, 16, 32, 64),
)


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    command: list[str]
    ready_path: str


class ServerNotReady(RuntimeError):
    pass


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="model_config.json")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    names = [load.name for load in LOADS]
    parser.add_argument("--loads", nargs="+", choices=names, default=names, help="which loads to run")
    parser.add_argument("--port-vif", type=int, default=8100)
    parser.add_argument("--port-vllm", type=int, default=8200)
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 round, a quarter of the prompts")
    args = parser.parse_args()
    args.loads = [load for load in LOADS if load.name in args.loads]
    if args.quick:
        args.rounds = 1
        args.loads = [dataclasses.replace(load, num_prompts=load.num_prompts // 4) for load in args.loads]
    return args


def load_model_entry(config: Path, model_name: str) -> tuple[Path, dict[str, Any]]:
    """The model's directory (resolved against the config file) and its config entry."""
    entry = json.loads(config.read_text())[model_name]
    return (config.resolve().parent / entry["model_path"]).resolve(), entry


def engine_flags(entry: dict[str, Any]) -> list[str]:
    """The entry's max_model_len and engine_args as vLLM command-line flags."""
    flags = ["--max-model-len", str(entry["max_model_len"])] if entry.get("max_model_len") else []
    for key, value in entry.get("engine_args", {}).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            flags += [flag, json.dumps(value) if isinstance(value, dict | list) else str(value)]
    return flags


def kv_cache_flags(args: argparse.Namespace) -> list[str]:
    """The CPU KV cache size vif would choose, measured once and given to both servers so they match.

    vLLM's own server would otherwise reserve 92% of the machine's memory. None on GPU, or where the user set
    VLLM_CPU_KVCACHE_SPACE (both servers inherit it).
    """
    size = build_engine_args(load_model(args.config, args.model_name), {}).kv_cache_memory_bytes
    return ["--kv-cache-memory-bytes", str(size)] if size else []


def build_servers(args: argparse.Namespace, model_dir: Path, entry: dict[str, Any]) -> list[Server]:
    shared = ["--host", "127.0.0.1", *kv_cache_flags(args)]
    vif = [str(BIN / "vif-runtime"), "serve", "--config", str(args.config), "--model-name", args.model_name]
    vllm = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    vllm += ["--served-model-name", args.model_name, *engine_flags(entry)]
    return [
        Server("vif", args.port_vif, [*vif, *shared, "--port", str(args.port_vif)], "/ready"),
        Server("vllm", args.port_vllm, [*vllm, *shared, "--port", str(args.port_vllm)], "/health"),
    ]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_status(url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return 0


def start_server(server: Server, log_path: Path) -> subprocess.Popen[bytes]:
    if port_in_use(server.port):
        raise ServerNotReady(f"port {server.port} is already in use")
    with log_path.open("wb") as log:
        return subprocess.Popen(server.command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_ready(server: Server, proc: subprocess.Popen[bytes]) -> float:
    """Seconds until the server's readiness endpoint answered 200."""
    start = time.monotonic()
    while time.monotonic() - start < READY_TIMEOUT_S:
        if proc.poll() is not None:
            raise ServerNotReady(f"{server.name} exited with code {proc.returncode}")
        if http_status(f"http://127.0.0.1:{server.port}{server.ready_path}") == 200:
            return time.monotonic() - start
        time.sleep(1.0)
    raise ServerNotReady(f"{server.name} not ready after {READY_TIMEOUT_S:.0f} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    stop_process_group(proc, STOP_TIMEOUT_S)


def warm_up(server: Server, model_name: str) -> None:
    body = {"model": model_name, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
    status = http_status(f"http://127.0.0.1:{server.port}/v1/chat/completions", body, timeout=120.0)
    if status != 200:
        raise ServerNotReady(f"{server.name} warm-up request failed (status {status or 'none'})")


def run_serving_benchmark(server: Server, load: Load, model_name: str, model_dir: Path, seed: int) -> dict[str, Any]:
    """vLLM's serving benchmark against one server; the summary numbers plus distinct request errors."""
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = ["--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--model", model_name]
    argv += ["--base-url", f"http://127.0.0.1:{server.port}", "--tokenizer", str(model_dir)]
    argv += ["--dataset-name", "random", "--random-input-len", str(load.input_len)]
    argv += ["--random-output-len", str(load.output_len)]
    argv += ["--max-concurrency", str(load.concurrency), "--num-prompts", str(load.num_prompts)]
    argv += ["--ignore-eos", "--seed", str(seed), "--disable-tqdm", "--percentile-metrics", "ttft,tpot,itl,e2el"]
    argv += ["--save-detailed"]  # keeps per-request errors in the result; without --save-result nothing is written
    bench_args = parser.parse_args(argv)
    result = main(bench_args)
    summary = {key: result.get(key) for key in KEPT_KEYS}
    summary["errors"] = sorted({error for error in result.get("errors", []) if error})
    return summary


def run_one(
    server: Server, args: argparse.Namespace, model_dir: Path, seed: int, log_path: Path
) -> dict[str, dict[str, Any]]:
    """A fresh server: start it, wait for it, warm it up, run every load on it, stop it. Results by load."""
    proc = start_server(server, log_path)
    try:
        startup_s = wait_until_ready(server, proc)
        warm_up(server, args.model_name)
        results = {}
        for load in args.loads:
            before, counters = cpu_seconds(proc.pid), engine_counters(server.port)
            summary = run_serving_benchmark(server, load, args.model_name, model_dir, seed)
            used, done = cpu_seconds(proc.pid) - before, max(summary["completed"] or 0, 1)
            summary |= {"api_cpu_ms": used.api * 1000 / done, "engine_cpu_ms": used.children * 1000 / done}
            summary |= engine_summary(
                counters, engine_counters(server.port), summary["duration"], summary["mean_e2el_ms"]
            )
            # Over the client's duration; the CPU window is a little wider, so a saturated worker can read 101 %.
            summary["worker_busy_pct"] = used.worker_busy * 100 / summary["duration"]
            summary["worker_wait_pct"] = used.worker_wait * 100 / summary["duration"]
            results[load.name] = {"seed": seed, "startup_s": round(startup_s, 1), **summary}
        return results
    finally:
        stop_server(proc)


def log_tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:]) if log_path.exists() else ""


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("nan")


def print_tables(
    rounds: list[dict[str, dict[str, dict[str, Any]]]], loads: list[Load], ours: str = "vif", theirs: str = "vllm"
) -> None:
    """One table per load: the medians of each server, then the medians of the per-round ours/theirs ratios."""
    names = list(rounds[0])
    for load in loads:
        per_load = [{name: r[name][load.name] for name in names} for r in rounds]
        print(f"\n{load.name}: {load.input_len} in / {load.output_len} out, {load.concurrency} in flight, "
              f"{load.num_prompts} prompts")  # fmt: skip
        header = f"{'':<10}" + "".join(f"{label:>13}" for label in COLUMNS.values()) + f"{'failed':>9}"
        print(header + "\n" + "-" * len(header))
        for name in names:
            cells = "".join(f"{statistics.median(r[name][key] for r in per_load):>13.2f}" for key in COLUMNS)
            print(f"{name:<10}{cells}{sum(r[name]['failed'] for r in per_load):>9}")
        ratios = [statistics.median(ratio(r[ours][k], r[theirs][k]) for r in per_load) for k in COLUMNS]
        print(f"{f'{ours}/{theirs}':<10}" + "".join(f"{value:>13.3f}" for value in ratios))
    print(f"\nmedians over {len(rounds)} round(s); ratios are medians of per-round ratios (higher req/s, tok/s")
    print("is better; lower TTFT, ITL is better).")


def report_failures(results: dict[str, dict[str, Any]]) -> int:
    """Print every labelled result (`round 2 vif front-end`) that had failed requests; the exit status (1 if any)."""
    failures = [(label, r) for label, r in results.items() if r["failed"] or r["errors"]]
    for label, result in failures:
        print(f"FAILED: {label}: {result['failed']} request(s); errors: {result['errors']}")
    return 1 if failures else 0


def main_bench() -> int:
    args = parse_args()
    model_dir, entry = load_model_entry(args.config, args.model_name)
    return run_rounds(args, build_servers(args, model_dir, entry), model_dir, "serving")


def run_rounds(
    args: argparse.Namespace, servers: list[Server], model_dir: Path, name: str, ours: str = "vif", theirs: str = "vllm"
) -> int:
    """`args.rounds` rounds of every load on each of `servers` (fresh each round, their order alternating), then
    the tables of `ours` against `theirs`; the exit status (1 if a request failed or a server did not start)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    rounds: list[dict[str, dict[str, dict[str, Any]]]] = []
    for index in range(args.rounds):
        seed = random.SystemRandom().randrange(2**31)
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for server in servers if index % 2 == 0 else servers[::-1]:
            log_path = RESULTS_DIR / f"{name}-{stamp}-{server.name}-round{index + 1}.log"
            print(f"\n=== round {index + 1}/{args.rounds}: {server.name} (seed {seed}, log {log_path}) ===", flush=True)
            try:
                results[server.name] = run_one(server, args, model_dir, seed, log_path)
            except ServerNotReady as error:
                print(f"ERROR: {error}; tail of {log_path}:\n{log_tail(log_path)}", file=sys.stderr)
                return 1
        rounds.append({server.name: results[server.name] for server in servers})
    out_path = RESULTS_DIR / f"{name}-{stamp}.json"
    meta = {"model_name": args.model_name, "loads": [vars(load) for load in args.loads]}
    out_path.write_text(json.dumps({**meta, "rounds": rounds}, indent=2) + "\n")
    print_tables(rounds, args.loads, ours, theirs)
    print(f"raw per-round numbers: {out_path}")
    labelled = {
        f"round {i + 1} {name} {load}": result
        for i, rnd in enumerate(rounds)
        for name, by_load in rnd.items()
        for load, result in by_load.items()
    }
    return report_failures(labelled)


if __name__ == "__main__":
    sys.exit(main_bench())
