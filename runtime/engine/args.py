"""vLLM engine arguments: vLLM's own CLI definitions, layered config < command line."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.utils.argparse_utils import FlexibleArgumentParser

from vif.runtime.config import ConfigError, ResolvedModel

ENGINE_FIELDS = frozenset(f.name for f in dataclasses.fields(AsyncEngineArgs))


def add_engine_args(parser: FlexibleArgumentParser) -> None:
    """Every vLLM engine flag (`--tensor-parallel-size`, `--dtype`, ...), exactly as vLLM defines them."""
    AsyncEngineArgs.add_cli_args(parser)


def build_engine_args(model: ResolvedModel, args: argparse.Namespace, defaults: dict[str, Any]) -> AsyncEngineArgs:
    """The model's path and length, then its config `engine_args`, then flags given on the command line."""
    unknown = sorted(set(model.entry.engine_args) - ENGINE_FIELDS)
    if unknown:
        raise ConfigError(f"{model.source}: {model.name}.engine_args.{unknown[0]}: not a vLLM engine argument")
    kwargs: dict[str, Any] = {
        "model": model.model,
        "served_model_name": [model.name],
        "disable_log_stats": False,  # vLLM's metrics feed /metrics
    }
    if model.entry.max_model_len is not None:
        kwargs["max_model_len"] = model.entry.max_model_len
    kwargs.update(model.entry.engine_args)
    kwargs.update(
        {
            k: v
            for k, v in vars(args).items()
            if k in ENGINE_FIELDS and k != "served_model_name" and v != defaults.get(k)
        }
    )
    return AsyncEngineArgs(**kwargs)
