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


# Set by vif from the checked config fields; engine_args may not redirect them (e.g. to a path outside the roots).
RESERVED = frozenset({"model", "tokenizer", "served_model_name", "max_model_len"})


def explicit_flags(parser: FlexibleArgumentParser, argv: list[str]) -> dict[str, Any]:
    """Only the flags given on the command line, even where a value equals vLLM's default."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if k in ENGINE_FIELDS}


def build_engine_args(model: ResolvedModel, flags: dict[str, Any]) -> AsyncEngineArgs:
    """The model's path and length, then its config `engine_args`, then `flags` given on the command line."""
    for key in sorted(model.entry.engine_args):
        if key not in ENGINE_FIELDS:
            raise ConfigError(f"{model.source}: {model.name}.engine_args.{key}: not a vLLM engine argument")
        if key in RESERVED:
            raise ConfigError(
                f"{model.source}: {model.name}.engine_args.{key}: set by vif from the config's own fields"
            )
    kwargs: dict[str, Any] = {
        "model": model.model,
        "served_model_name": [model.name],
        "disable_log_stats": False,  # vLLM's metrics feed /metrics
    }
    if model.entry.max_model_len is not None:
        kwargs["max_model_len"] = model.entry.max_model_len
    kwargs.update(model.entry.engine_args)
    kwargs.update({k: v for k, v in flags.items() if k != "served_model_name"})
    return AsyncEngineArgs(**kwargs)
