"""Router scale benchmark: how many concurrent streams the router holds, and what it adds to them.

The replicas are stand-ins of the benchmark's own (`--stand-in`): two listeners in one process that answer every
POST with a server-sent event stream of `--tokens` chat chunks, one every `--interval` seconds, so the numbers
measure the proxy and not an engine. A client of its own holds `--levels` streams open at once (each worker sends
its next request as soon as its stream ends, on a kept-alive connection), for `--seconds` after a ramp, and times
the first event (TTFT) and the gaps between events (inter-token latency) of every stream that started after the
ramp.

Arms, each on fresh processes: `direct` (the client alternates between the stand-ins), `vif-router`
(its default strategy) and `vllm-router` (`--policy round_robin`, Rust), both pinned to core 0 while the client
and the stand-ins share core 1. Printed per level: streams completed and failed, TTFT and inter-token latency
(p50, p99) and what each router adds to them over `direct`, the router's CPU seconds per 1,000 requests and its
peak resident memory. Raw numbers go to bench-results/router-scale-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from process_group import stop_process_group

# Not from serving_bench: it imports vLLM, which the stand-in process (this file again) has no use for.
RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench-results"
BIN = Path(sys.executable).parent

VLLM_ROUTER = Path.home() / ".cache/vif/tools/vllm-router-0.1.17/bin/vllm-router"
CHUNK = b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok"}}]}\n\n'
DONE = b"data: [DONE]\n\n"
REQUEST_BODY = json.dumps(
    {"model": "stand-in", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 64}
).encode()
STAND_IN_PORTS = (8500, 8501)
ROUTER_PORT = 8510


# --- the stand-in replicas ------------------------------------------------------------------------------------------


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tokens: int, interval: float
) -> None:
    """HTTP/1.1 with keep-alive: a GET gets `{}`, a POST a stream of `tokens` chunks."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method = head.split(b" ", 1)[0]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            if method != b"POST":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(tokens):
                await asyncio.sleep(interval)
                writer.write(chunk(CHUNK))
                await writer.drain()
            writer.write(chunk(DONE) + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def stand_in(ports: list[int], tokens: int, interval: float) -> None:
    servers = [
        await asyncio.start_server(
            lambda r, w: serve_connection(r, w, tokens, interval), "127.0.0.1", port, backlog=8192
        )
        for port in ports
    ]
    await asyncio.gather(*(s.serve_forever() for s in servers))


# --- the client -----------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    started_after: float
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        self.failed += 1
        self.errors[why] = self.errors.get(why, 0) + 1


async def read_stream(reader: asyncio.StreamReader) -> list[float]:
    """The arrival time of each event of one chunked SSE response, after its headers."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    arrivals, buffered = [], b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return arrivals
        now = time.monotonic()
        buffered += data[:-2]
        while b"\n\n" in buffered:
            event, buffered = buffered.split(b"\n\n", 1)
            if event.startswith(b"data: ") and event != b"data: [DONE]":
                arrivals.append(now)


async def worker(port: int, tally: Tally, stop_at: float, start_at: float, tokens: int) -> None:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(REQUEST_BODY), REQUEST_BODY)
    )
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < stop_at:
        sent = time.monotonic()
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
            reader, writer = connection
            writer.write(request)
            await writer.drain()
            arrivals = await read_stream(reader)
        except Exception as exc:  # counted, never raised: a failed stream is the measurement
            if connection is not None:
                connection[1].close()
            connection = None
            if sent >= tally.started_after:
                tally.fail(type(exc).__name__ if not isinstance(exc, RuntimeError) else str(exc))
            await asyncio.sleep(0.1)
            continue
        if sent < tally.started_after:
            continue
        if len(arrivals) != tokens:
            tally.fail(f"{len(arrivals)} of {tokens} events")
            continue
        tally.completed += 1
        tally.ttft.append(arrivals[0] - sent)
        tally.itl.extend(b - a for a, b in itertools.pairwise(arrivals))
    if connection is not None:
        connection[1].close()


async def drive(ports: list[int], streams: int, ramp: float, seconds: float, tokens: int) -> Tally:
    start = time.monotonic()
    tally = Tally(started_after=start + ramp)
    stop_at = start + ramp + seconds
    await asyncio.gather(
        *(worker(ports[i % len(ports)], tally, stop_at, start + ramp * i / streams, tokens) for i in range(streams))
    )
    return tally


# --- the arms -------------------------------------------------------------------------------------------------------


def pinned(core: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command]


def router_command(arm: str) -> list[str] | None:
    replicas = [f"http://127.0.0.1:{port}" for port in STAND_IN_PORTS]
    if arm == "vif-router":
        command = [
            str(BIN / "vif-router"),
            "--port",
            str(ROUTER_PORT),
            "--log-level",
            "warning",
            "--max-pending",
            "10000",
        ]
        return command + [a for url in replicas for a in ("--endpoint", url)]
    if arm == "vllm-router":
        command = [str(VLLM_ROUTER), "--host", "127.0.0.1", "--port", str(ROUTER_PORT), "--policy", "round_robin"]
        command += ["--prometheus-host", "127.0.0.1", "--prometheus-port", str(ROUTER_PORT + 1)]
        return [*command, "--log-level", "warning", "--worker-urls", *replicas]
    return None


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:g} s")


def busy_seconds(process: psutil.Process) -> float:
    times = [p.cpu_times() for p in [process, *process.children(recursive=True)]]
    return sum(t.user + t.system for t in times)


def peak_rss_bytes(process: psutil.Process) -> int:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_arm(arm: str, streams: int, args: argparse.Namespace, log_stem: str) -> dict[str, Any]:
    here = Path(__file__).resolve()
    stand_in_cmd = [
        sys.executable,
        str(here),
        "--stand-in",
        "--tokens",
        str(args.tokens),
        "--interval",
        str(args.interval),
    ]
    running: list[subprocess.Popen[bytes]] = []
    try:
        with open(f"{log_stem}-stand-in.log", "wb") as log:
            running.append(
                subprocess.Popen(pinned(1, stand_in_cmd), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        wait_for(f"http://127.0.0.1:{STAND_IN_PORTS[0]}/ready", running[0])
        ports = list(STAND_IN_PORTS)
        router = None
        command = router_command(arm)
        if command is not None:
            with open(f"{log_stem}-router.log", "wb") as log:
                running.append(
                    subprocess.Popen(pinned(0, command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                )
            wait_for(f"http://127.0.0.1:{ROUTER_PORT}/health", running[-1])
            if arm == "vif-router":
                wait_for(f"http://127.0.0.1:{ROUTER_PORT}/ready", running[-1])
            router = psutil.Process(running[-1].pid)
            ports = [ROUTER_PORT]
        os.sched_setaffinity(0, {1})
        cpu_before = busy_seconds(router) if router else 0.0
        tally = asyncio.run(drive(ports, streams, args.ramp, args.seconds, args.tokens))
        cpu = busy_seconds(router) - cpu_before if router else 0.0
        requests = tally.completed + tally.failed
        return {
            "streams": streams, "completed": tally.completed, "failed": tally.failed, "errors": tally.errors,
            "ttft_p50_ms": percentile(tally.ttft, 0.5) * 1e3, "ttft_p99_ms": percentile(tally.ttft, 0.99) * 1e3,
            "itl_p50_ms": percentile(tally.itl, 0.5) * 1e3, "itl_p99_ms": percentile(tally.itl, 0.99) * 1e3,
            "router_cpu_s_per_1000": cpu / requests * 1000 if router and requests else None,
            "router_peak_rss_mb": peak_rss_bytes(router) / 2**20 if router else None,
        }  # fmt: skip
    finally:
        for proc in reversed(running):
            stop_process_group(proc, timeout=10)


def print_table(results: dict[int, dict[str, dict[str, Any]]]) -> None:
    header = f"{'streams':>8} {'arm':<12}{'done':>7}{'failed':>7}{'TTFT p50':>10}{'p99':>9}{'ITL p50':>9}{'p99':>8}"
    header += f"{'+TTFT p50':>10}{'+p99':>8}{'+ITL p50':>9}{'+p99':>8}{'CPU s/1k':>9}{'peak MB':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for streams, arms in results.items():
        direct = arms.get("direct")
        for arm, r in arms.items():
            added = ""
            if direct is not None and arm != "direct":
                added = "".join(f"{r[k] - direct[k]:>{w}.1f}" for k, w in (("ttft_p50_ms", 10), ("ttft_p99_ms", 8),
                                                                        ("itl_p50_ms", 9), ("itl_p99_ms", 8)))  # fmt: skip
            else:
                added = " " * 35
            cpu = f"{r['router_cpu_s_per_1000']:>9.2f}" if r["router_cpu_s_per_1000"] is not None else " " * 9
            rss = f"{r['router_peak_rss_mb']:>8.0f}" if r["router_peak_rss_mb"] is not None else ""
            print(f"{streams:>8} {arm:<12}{r['completed']:>7}{r['failed']:>7}{r['ttft_p50_ms']:>10.1f}"
                  f"{r['ttft_p99_ms']:>9.1f}{r['itl_p50_ms']:>9.1f}{r['itl_p99_ms']:>8.1f}{added}{cpu}{rss}")  # fmt: skip
        vif, vllm = arms.get("vif-router"), arms.get("vllm-router")
        if vif and vllm and vif["router_cpu_s_per_1000"] and vllm["router_cpu_s_per_1000"]:
            share = vif["router_cpu_s_per_1000"] / vllm["router_cpu_s_per_1000"]
            print(f"{'':>8} vif/vllm CPU per request: {share:.2f}x")
    print("\nTTFT and ITL in ms; + columns: added over direct. Aims: 5,000 streams with no failures, added p99 ITL")
    print("under 5 ms at 1,000 streams, CPU per request within 1.5x of vllm-router's.")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stand-in", action="store_true", help="run the stand-in replicas (used by the benchmark)")
    parser.add_argument("--levels", type=int, nargs="+", default=[100, 1000, 5000], help="concurrent streams")
    parser.add_argument("--arms", nargs="+", default=["direct", "vif-router", "vllm-router"])
    parser.add_argument("--tokens", type=int, default=40, help="events per stream")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between a stream's events")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which the streams start")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured, after the ramp")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of sockets, inherited by the servers
    if args.stand_in:
        asyncio.run(stand_in(list(STAND_IN_PORTS), args.tokens, args.interval))
        return 0
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for streams in args.levels:
        results[streams] = {}
        for arm in args.arms:
            print(f"=== {streams} streams: {arm} ===", flush=True)
            results[streams][arm] = run_arm(
                arm, streams, args, str(RESULTS_DIR / f"router-scale-{stamp}-{streams}-{arm}")
            )
            print(f"  {results[streams][arm]}", flush=True)
    out = RESULTS_DIR / f"router-scale-{stamp}.json"
    out.write_text(json.dumps({**vars(args), "results": results}, indent=2) + "\n")
    print_table(results)
    print(f"raw numbers: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
