"""Cold start: what a replica coming up from nothing costs before it answers, vif against vLLM's own server.

A scale from zero waits for the autoscaler (KEDA polls every 30 s by default), the pod's scheduling and image pull
(the cluster's), and then this: the server starting until its readiness path answers, and its first answer. Both
servers start fresh, one at a time, the same model and engine settings (serving_bench.build_servers), order
reversed every round; medians, and the vif/vLLM ratio of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from serving_bench import (
    RESULTS_DIR,
    ServerNotReady,
    build_servers,
    load_model_entry,
    log_tail,
    ratio,
    start_server,
    stop_server,
    wait_until_ready,
    warm_up,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="model_config.json")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port-vif", type=int, default=8100)
    parser.add_argument("--port-vllm", type=int, default=8200)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    model_dir, entry = load_model_entry(args.config, args.model_name)
    servers = build_servers(args, model_dir, entry)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    ready: dict[str, list[float]] = {s.name: [] for s in servers}
    answered: dict[str, list[float]] = {s.name: [] for s in servers}
    for index in range(args.rounds):
        for server in servers if index % 2 == 0 else servers[::-1]:
            log_path = RESULTS_DIR / f"cold-start-{stamp}-{server.name}-round{index + 1}.log"
            start = time.monotonic()
            proc = start_server(server, log_path)
            try:
                ready[server.name].append(wait_until_ready(server, proc))
                warm_up(server, args.model_name)  # the first chat answer, 8 tokens
                answered[server.name].append(time.monotonic() - start)
            except ServerNotReady as error:
                print(f"ERROR: {error}; tail of {log_path}:\n{log_tail(log_path)}", file=sys.stderr)
                return 1
            finally:
                stop_server(proc)
            print(f"round {index + 1} {server.name}: ready after {ready[server.name][-1]:.1f} s,"
                  f" first answer after {answered[server.name][-1]:.1f} s", flush=True)  # fmt: skip
    print(f"\nmedians over {args.rounds} rounds     ready s   first answer s")
    for server in servers:
        print(f"{server.name:<28}{statistics.median(ready[server.name]):>10.1f}"
              f"{statistics.median(answered[server.name]):>17.1f}")  # fmt: skip
    vif, vllm = (s.name for s in servers)
    print(f"{'vif/vLLM':<28}{ratio(statistics.median(ready[vif]), statistics.median(ready[vllm])):>10.3f}"
          f"{ratio(statistics.median(answered[vif]), statistics.median(answered[vllm])):>17.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
