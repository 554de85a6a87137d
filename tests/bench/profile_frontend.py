"""Profile the vif runtime's front end (its API process, not the engine core) under the front-end-bound load.

Starts a fresh `vif-runtime serve`, attaches py-spy to it, drives the `front-end` load of the serving benchmark
(128 tokens in, 2 out, 64 in flight) and writes a flame graph (SVG) plus the collapsed stacks, and prints the
functions with the most samples on the event loop's thread, so docs/performance.md can say where time goes.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from serving_bench import (
    LOADS,
    RESULTS_DIR,
    build_servers,
    load_model_entry,
    run_serving_benchmark,
    start_server,
    stop_server,
    wait_until_ready,
    warm_up,
)

SAMPLES_PER_S = 200
TOP = 25


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--port-vif", type=int, default=8100)
    parser.add_argument("--port-vllm", type=int, default=8200)  # build_servers wants it; vLLM is not started
    return parser.parse_args()


def record(py_spy: str, pid: int, out: Path, fmt: str) -> subprocess.Popen[bytes]:
    """py-spy sampling the server's main process (the event loop and the prepare thread) until interrupted."""
    cmd = [py_spy, "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_S), "--format", fmt, "--output", str(out)]
    return subprocess.Popen([*cmd, "--nonblocking", "--threads"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def top_functions(collapsed: Path) -> list[tuple[str, int, int]]:
    """(function, samples anywhere on the stack, samples as the innermost frame) of the busiest thread."""
    by_thread: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        by_thread[frames[0]].append((frames[1:], int(count)))
    busiest = max(by_thread.values(), key=lambda stacks: sum(n for _, n in stacks))
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for frames, count in busiest:
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    return [(frame, inclusive[frame], own[frame]) for frame, _ in own.most_common(TOP)]


def main() -> int:
    args = parse_args()
    model_dir, entry = load_model_entry(args.config, args.model_name)
    vif = build_servers(args, model_dir, entry)[0]
    load = next(load for load in LOADS if load.name == "front-end")
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / f"profile-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    proc = start_server(vif, stem.with_suffix(".log"))
    try:
        wait_until_ready(vif, proc)
        warm_up(vif, args.model_name)
        svg, raw = stem.with_suffix(".svg"), stem.with_suffix(".collapsed")
        spies = [record(args.py_spy, proc.pid, svg, "flamegraph"), record(args.py_spy, proc.pid, raw, "raw")]
        summary = run_serving_benchmark(vif, load, args.model_name, model_dir, random.SystemRandom().randrange(2**31))
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            _, err = spy.communicate(timeout=60)
            if spy.returncode not in (0, -signal.SIGINT):
                print(f"py-spy failed: {err.decode(errors='replace')}", file=sys.stderr)
                return 1
    finally:
        stop_server(proc)
    print(
        f"\nfront-end load: {summary['request_throughput']:.2f} req/s, median TTFT {summary['median_ttft_ms']:.0f} ms"
    )
    total = sum(int(line.rpartition(" ")[2]) for line in raw.read_text().splitlines())
    print(f"\n{'samples (incl.)':>16}{'own':>8}  function (busiest thread, {total} samples in all threads)")
    for frame, inclusive, own in top_functions(raw):
        print(f"{inclusive:>16}{own:>8}  {frame}")
    print(f"\nflame graph: {svg}\ncollapsed stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
