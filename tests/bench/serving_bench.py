"""Serving benchmark: the vif runtime against vLLM's own OpenAI server, same model, same engine settings.

Both servers are driven by vLLM's serving benchmark (random 128-token prompts, 64 output tokens with EOS
ignored, bounded concurrency, streaming /v1/chat/completions) and compared on request throughput, output
token throughput, median time to first token and median inter-token latency.

Machines are shared and noisy, so only one server runs at a time, each run gets a fresh server, and the
order alternates across rounds (vif first in odd rounds, vLLM first in even ones) so that slow drift in
the machine's load does not always favour the same server. Each round uses a new random seed, the same
for both servers, so neither reuses prompts it has already cached. The reported numbers are medians over
rounds; the ratios are medians of the per-round vif/vLLM ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
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
KEPT_KEYS += ("median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "median_itl_ms", "p99_itl_ms")
COLUMNS = {"request_throughput": "req/s", "output_throughput": "out tok/s", "median_ttft_ms": "TTFT ms"}
COLUMNS |= {"median_itl_ms": "ITL ms"}


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
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--port-vif", type=int, default=8100)
    parser.add_argument("--port-vllm", type=int, default=8200)
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 round of 32 prompts")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.num_prompts = 1, 32
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
    """SIGTERM the server's whole process group (vLLM spawns children), SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=STOP_TIMEOUT_S)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def warm_up(server: Server, model_name: str) -> None:
    body = {"model": model_name, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
    status = http_status(f"http://127.0.0.1:{server.port}/v1/chat/completions", body, timeout=120.0)
    if status != 200:
        raise ServerNotReady(f"{server.name} warm-up request failed (status {status or 'none'})")


def run_serving_benchmark(server: Server, args: argparse.Namespace, model_dir: Path, seed: int) -> dict[str, Any]:
    """vLLM's serving benchmark against one server; the summary numbers plus distinct request errors."""
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = ["--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--model", args.model_name]
    argv += ["--base-url", f"http://127.0.0.1:{server.port}", "--tokenizer", str(model_dir)]
    argv += ["--dataset-name", "random", "--random-input-len", "128", "--random-output-len", "64"]
    argv += ["--max-concurrency", str(args.concurrency), "--num-prompts", str(args.num_prompts)]
    argv += ["--ignore-eos", "--seed", str(seed), "--disable-tqdm"]
    argv += ["--save-detailed"]  # keeps per-request errors in the result; without --save-result nothing is written
    bench_args = parser.parse_args(argv)
    result = main(bench_args)
    summary = {key: result.get(key) for key in KEPT_KEYS}
    summary["errors"] = sorted({error for error in result.get("errors", []) if error})
    return summary


def run_one(server: Server, args: argparse.Namespace, model_dir: Path, seed: int, log_path: Path) -> dict[str, Any]:
    """A fresh server: start it, wait for it, warm it up, benchmark it, stop it."""
    proc = start_server(server, log_path)
    try:
        startup_s = wait_until_ready(server, proc)
        warm_up(server, args.model_name)
        return {"seed": seed, "startup_s": round(startup_s, 1), **run_serving_benchmark(server, args, model_dir, seed)}
    finally:
        stop_server(proc)


def log_tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:]) if log_path.exists() else ""


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("nan")


def print_table(rounds: list[dict[str, dict[str, Any]]]) -> None:
    names = list(rounds[0])
    header = f"{'':<10}" + "".join(f"{label:>12}" for label in COLUMNS.values()) + f"{'failed':>9}"
    print("\n" + header + "\n" + "-" * len(header))
    for name in names:
        cells = "".join(f"{statistics.median(r[name][key] for r in rounds):>12.2f}" for key in COLUMNS)
        print(f"{name:<10}{cells}{sum(r[name]['failed'] for r in rounds):>9}")
    ratios = "".join(f"{statistics.median(ratio(r['vif'][k], r['vllm'][k]) for r in rounds):>12.3f}" for k in COLUMNS)
    print(f"{'vif/vllm':<10}{ratios}")
    print(f"\nmedians over {len(rounds)} round(s); ratios are medians of per-round ratios (higher req/s, tok/s")
    print("is better; lower TTFT, ITL is better).")


def report_failures(rounds: list[dict[str, dict[str, Any]]]) -> int:
    """Print every arm of every round that had failed requests; the exit status (1 if any)."""
    failures = [(i + 1, n, r) for i, rnd in enumerate(rounds) for n, r in rnd.items() if r["failed"] or r["errors"]]
    for round_no, name, result in failures:
        print(f"FAILED: round {round_no} {name}: {result['failed']} request(s); errors: {result['errors']}")
    return 1 if failures else 0


def main_bench() -> int:
    args = parse_args()
    model_dir, entry = load_model_entry(args.config, args.model_name)
    servers = build_servers(args, model_dir, entry)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    rounds: list[dict[str, dict[str, Any]]] = []
    for index in range(args.rounds):
        seed = random.SystemRandom().randrange(2**31)
        results: dict[str, dict[str, Any]] = {}
        for server in servers if index % 2 == 0 else servers[::-1]:
            log_path = RESULTS_DIR / f"serving-{stamp}-{server.name}-round{index + 1}.log"
            print(f"\n=== round {index + 1}/{args.rounds}: {server.name} (seed {seed}, log {log_path}) ===", flush=True)
            try:
                results[server.name] = run_one(server, args, model_dir, seed, log_path)
            except ServerNotReady as error:
                print(f"ERROR: {error}; tail of {log_path}:\n{log_tail(log_path)}", file=sys.stderr)
                return 1
        rounds.append({server.name: results[server.name] for server in servers})
    out_path = RESULTS_DIR / f"serving-{stamp}.json"
    meta = {"model_name": args.model_name, "num_prompts": args.num_prompts, "concurrency": args.concurrency}
    out_path.write_text(json.dumps({**meta, "rounds": rounds}, indent=2) + "\n")
    print_table(rounds)
    print(f"raw per-round numbers: {out_path}")
    return report_failures(rounds)


if __name__ == "__main__":
    sys.exit(main_bench())
