"""What tracing costs: vif with every request traced to a real collector against vif untraced, same engine flags.

Both are `vif-runtime serve` on the default model; the traced one gets `--otlp-traces-endpoint` to a Jaeger started
here (tests/helpers/jaeger.py; `make test-servers` builds it) and `OTEL_TRACES_SAMPLER=always_on`, so every request
makes its spans and vLLM's `llm_request` span and exports them: the most tracing can cost, where a sampled ratio
costs less. Each round starts each server fresh, in alternating order, and runs vLLM's serving benchmark on it
(serving_bench.py's loads); the table gives the medians and the per-round traced/untraced ratios.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the collector's helper

from serving_bench import build_servers, load_model_entry, parse_args, run_rounds

from helpers.jaeger import running_jaeger


def main() -> int:
    args = parse_args()
    model_dir, entry = load_model_entry(args.config, args.model_name)
    vif = build_servers(args, model_dir, entry)[0]
    os.environ["OTEL_TRACES_SAMPLER"] = "always_on"  # read by the traced server only: the other has no endpoint
    with tempfile.TemporaryDirectory() as workdir, running_jaeger(Path(workdir)) as jaeger:
        port = args.port_vllm
        command = [*vif.command[: vif.command.index("--port")], "--port", str(port)]
        traced = replace(vif, name="traced", port=port, command=[*command, "--otlp-traces-endpoint", jaeger.otlp_grpc])
        untraced = replace(vif, name="untraced")
        return run_rounds(args, [untraced, traced], model_dir, "tracing", ours="traced", theirs="untraced")


if __name__ == "__main__":
    sys.exit(main())
