"""Abuse benchmark: does a burst of huge request bodies stall the server's event loop?

16 clients at once send ~2 MB bodies (40,000 short chat messages; one 2 MB message; a 2 MB completion prompt),
round after round, while a probe asks `/health` every 10 ms on a fresh connection, as the kubelet does. One
such body goes first, unmeasured: vif starts the child process that vets very large bodies on the first one. A
stalled loop shows as slow probes: the kubelet's timeout is seconds, and a few such bodies at once used to
exceed it. vif and vLLM's own server run side by side (same model and engine settings, one at a time, fresh
each) and the probe's p50/p99/max are printed for both, with the vif/vLLM ratio of the p99.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from serving_bench import (
    RESULTS_DIR,
    Server,
    ServerNotReady,
    build_servers,
    load_model_entry,
    log_tail,
    start_server,
    stop_server,
    wait_until_ready,
    warm_up,
)

CLIENTS = 16
PROBE_EVERY_S = 0.01


def bodies(model: str) -> dict[str, tuple[str, bytes]]:
    """The abusive bodies by name: (path, JSON bytes), each about 2 MB."""
    many = {"model": model, "messages": [{"role": "user", "content": "hi there"}] * 40_000, "max_tokens": 4}
    one = {"model": model, "messages": [{"role": "user", "content": "word " * 400_000}], "max_tokens": 4}
    prompt = {"model": model, "prompt": "word " * 400_000, "max_tokens": 4}
    return {
        "40k messages": ("/v1/chat/completions", json.dumps(many).encode()),
        "one 2 MB message": ("/v1/chat/completions", json.dumps(one).encode()),
        "2 MB prompt": ("/v1/completions", json.dumps(prompt).encode()),
    }


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def probe_while(url: str, done: threading.Event) -> list[float]:
    """Milliseconds per `/health` probe, a fresh connection each, until `done`."""
    latencies = []
    while not done.is_set():
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                response.read()
        except OSError:
            pass
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(PROBE_EVERY_S)
    return latencies


def abuse(server: Server, model: str, rounds: int) -> dict[str, object]:
    base = f"http://127.0.0.1:{server.port}"
    results: dict[str, object] = {}
    path, body = bodies(model)["40k messages"]
    post(base + path, body)
    for name, (path, body) in bodies(model).items():
        done = threading.Event()
        with ThreadPoolExecutor(CLIENTS + 1) as pool:
            probe = pool.submit(probe_while, f"{base}/health", done)
            time.sleep(0.2)
            started = time.perf_counter()
            burst = [base + path] * CLIENTS
            statuses = [s for _ in range(rounds) for s in pool.map(post, burst, [body] * CLIENTS)]
            seconds = time.perf_counter() - started
            done.set()
            latencies = sorted(probe.result())
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        results[name] = {
            "statuses": sorted(set(statuses)),
            "bodies_per_s": round(len(statuses) / seconds, 1),
            "probe_p50_ms": round(statistics.median(latencies), 1),
            "probe_p99_ms": round(p99, 1),
            "probe_max_ms": round(latencies[-1], 1),
            "probes": len(latencies),
        }
        print(f"  {name:<18} {results[name]}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--rounds", type=int, default=5, help="bursts of 16 bodies per kind")
    parser.add_argument("--port-vif", type=int, default=8100)
    parser.add_argument("--port-vllm", type=int, default=8200)
    parser.add_argument("--only", choices=["vif", "vllm"], help="one server, no comparison (for a quick look)")
    args = parser.parse_args()
    model_dir, entry = load_model_entry(args.config, args.model_name)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    results: dict[str, dict[str, object]] = {}
    for server in build_servers(args, model_dir, entry):
        if args.only and server.name != args.only:
            continue
        log_path = RESULTS_DIR / f"abuse-{stamp}-{server.name}.log"
        print(f"\n=== {server.name} (log {log_path}) ===", flush=True)
        proc = start_server(server, log_path)
        try:
            wait_until_ready(server, proc)
            warm_up(server, args.model_name)
            results[server.name] = abuse(server, args.model_name, args.rounds)
        except ServerNotReady as error:
            print(f"ERROR: {error}; tail of {log_path}:\n{log_tail(log_path)}", file=sys.stderr)
            return 1
        finally:
            stop_server(proc)
    if args.only:
        return 0
    print(f"\n{'body':<18}{'vif p99 ms':>12}{'vLLM p99 ms':>13}{'vif/vLLM':>10}{'vif max ms':>12}{'vLLM max ms':>13}")
    for name in results["vif"]:
        ours, theirs = results["vif"][name], results["vllm"][name]
        ratio = ours["probe_p99_ms"] / theirs["probe_p99_ms"]  # type: ignore[index,operator]
        print(
            f"{name:<18}{ours['probe_p99_ms']:>12}{theirs['probe_p99_ms']:>13}{ratio:>10.3f}"  # type: ignore[index]
            f"{ours['probe_max_ms']:>12}{theirs['probe_max_ms']:>13}"  # type: ignore[index]
        )
    out = RESULTS_DIR / f"abuse-{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nprobe latency of /health during bursts of {CLIENTS} concurrent bodies; raw numbers: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
