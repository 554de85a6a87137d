"""vLLM engine arguments: vLLM's own CLI definitions, layered config < command line; on CPU, the KV cache's size."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from vllm.config import SchedulerConfig
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.platforms import current_platform
from vllm.utils.argparse_utils import FlexibleArgumentParser

from vif.runtime.config import ConfigError, ResolvedModel
from vif.runtime.engine.kv_cache import KVCacheDoesNotFit, available_memory, plan_kv_cache, read_model_facts

log = logging.getLogger(__name__)

ENGINE_FIELDS = frozenset(f.name for f in dataclasses.fields(AsyncEngineArgs))


class NoDevice(RuntimeError):
    """The installed vLLM found no device it can run on (the GPU build on a machine without a GPU)."""


def add_engine_args(parser: FlexibleArgumentParser) -> None:
    """Every vLLM engine flag (`--tensor-parallel-size`, `--dtype`, ...), exactly as vLLM defines them. NoDevice
    first where vLLM found no device: its own flag definitions would fail on it with a long traceback ("Failed to
    infer device type")."""
    if current_platform.is_unspecified():
        raise NoDevice(
            "this vLLM build found no device to run on (no GPU is visible to it); serve on CPUs with the CPU image"
            " (vllm-cpu), or give the container a GPU"
        )
    AsyncEngineArgs.add_cli_args(parser)


# Set by vif from the checked config fields; engine_args may not redirect them (e.g. to a path outside the roots).
RESERVED = frozenset({"model", "tokenizer", "served_model_name", "max_model_len"})


def explicit_flags(parser: FlexibleArgumentParser, argv: list[str]) -> dict[str, Any]:
    """Only the flags given on the command line, even where a value equals vLLM's default."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if k in ENGINE_FIELDS}


def build_engine_args(model: ResolvedModel, flags: dict[str, Any]) -> AsyncEngineArgs:
    """The model's path and length, then its config `engine_args`, then `flags` given on the command line (without
    `--model` and `--served-model-name`: the CLI takes those to choose the model, `cli._chosen_model`).

    On CPU, unless the user sized memory (`VLLM_CPU_KVCACHE_SPACE`, `gpu_memory_utilization` or
    `kv_cache_memory_bytes`), the KV cache is sized from the model and the free memory (`engine.kv_cache`).
    """
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
    kwargs.update(flags)
    if model.adapters:
        if kwargs.get("enable_lora") is False:
            raise ConfigError(f"{model.source}: {model.name}.engine_args.enable_lora: lora_adapters need it on")
        kwargs["enable_lora"] = True  # max_loras, max_lora_rank, ... come from engine_args or flags as given
    if current_platform.is_cpu() and not _memory_chosen_by_user(kwargs):
        try:
            kwargs["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(kwargs)
        except KVCacheDoesNotFit as exc:
            raise ConfigError(f"{model.source}: {model.name}: {exc}") from None
    return AsyncEngineArgs(**kwargs)


def _memory_chosen_by_user(kwargs: dict[str, Any]) -> bool:
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):  # vLLM's CPU backend reads it (GiB) over any engine argument
        return True
    return kwargs.get("gpu_memory_utilization") is not None or kwargs.get("kv_cache_memory_bytes") is not None


def cpu_kv_cache_bytes(kwargs: dict[str, Any]) -> int | None:
    """Each CPU worker's `kv_cache_memory_bytes`, planned by `kv_cache.plan_kv_cache`; None leaves it to vLLM."""
    model, dtype, kv_cache_dtype = kwargs["model"], kwargs.get("dtype", "auto"), kwargs.get("kv_cache_dtype", "auto")
    try:
        facts = read_model_facts(_model_dir(model), str(dtype), str(kv_cache_dtype))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        log.warning("cannot size the CPU KV cache from %s (%s); set VLLM_CPU_KVCACHE_SPACE (GiB)", model, exc)
        return None
    memory = available_memory()
    max_model_len = kwargs.get("max_model_len") or facts.max_position_embeddings
    if memory is None or not isinstance(max_model_len, int) or max_model_len <= 0:
        log.warning(
            "cannot size the CPU KV cache (available memory or max_model_len unknown); set VLLM_CPU_KVCACHE_SPACE"
        )
        return None
    max_num_seqs = kwargs.get("max_num_seqs") or SchedulerConfig.DEFAULT_MAX_NUM_SEQS
    plan = plan_kv_cache(facts, max_model_len, max_num_seqs, memory.bytes)
    log.info("CPU KV cache: %s; available: %s", plan.describe(), memory.source)
    # Tensor and pipeline parallel workers each hold a share of the heads or layers, and each allocates this much.
    workers = int(kwargs.get("tensor_parallel_size") or 1) * int(kwargs.get("pipeline_parallel_size") or 1)
    return plan.bytes // workers


def _model_dir(model: str) -> Path:
    """A model directory on disk, or for a Hugging Face id the cache folder of its config.json (fetched if new)."""
    if Path(model).is_absolute() or Path(model).exists():
        return Path(model)
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(model, "config.json")).parent
