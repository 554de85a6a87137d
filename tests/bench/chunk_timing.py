"""When each streamed token reaches the client, per request, against a running server (vif or vLLM's).

vLLM's serving benchmark counts every gap between chunks as an inter-token latency, including the gap after a
role-only first chunk; with 2-token answers that halves its ITL median. This measures what it means instead:
the gap between the first and the second chunk that carry text.

    python tests/bench/chunk_timing.py http://127.0.0.1:8000 --requests 192 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

import httpx

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
]


async def token_times(client: httpx.AsyncClient, url: str, model: str, words: int, max_tokens: int) -> list[float]:
    """Seconds from sending the request to each chunk that carried text."""
    prompt = " ".join(random.choice(WORDS) for _ in range(words))
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    body |= {"ignore_eos": True, "stream": True}
    start, times = time.perf_counter(), []
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    times.append(time.perf_counter() - start)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=192)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--words", type=int, default=110, help="prompt length in words (about 1 token each)")
    parser.add_argument("--max-tokens", type=int, default=2)
    args = parser.parse_args()
    gate = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one() -> list[float]:
            async with gate:
                return await token_times(client, args.url, args.model, args.words, args.max_tokens)

        started = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(args.requests)))
        elapsed = time.perf_counter() - started
    gaps = [t[1] - t[0] for t in results if len(t) >= 2]
    print(
        f"{args.requests / elapsed:.2f} req/s; median first text {statistics.median(t[0] for t in results if t):.2f} s"
    )
    if gaps:
        print(f"median gap between the first two text chunks: {statistics.median(gaps):.3f} s ({len(gaps)} requests)")


if __name__ == "__main__":
    asyncio.run(main())
