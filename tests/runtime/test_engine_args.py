"""vLLM engine arguments pass through from vLLM's own parser, layered on the config's."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import pytest

from vif.runtime.cli import engine_parser
from vif.runtime.config import ConfigError, ModelEntry, ResolvedModel
from vif.runtime.engine import args as args_module
from vif.runtime.engine.args import build_engine_args, explicit_flags
from vif.runtime.engine.kv_cache import AvailableMemory, GiB


def resolved(**entry: object) -> ResolvedModel:
    return ResolvedModel("m", ModelEntry(model_path="/models/m", **entry), "/models/m", None, "conf.json")


@pytest.fixture(scope="module")
def parser():
    return engine_parser()


def test_config_then_command_line(parser) -> None:
    model = resolved(max_model_len=1024, engine_args={"dtype": "float32", "tensor_parallel_size": 4})
    flags = explicit_flags(parser, ["--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.5"])
    engine_args = build_engine_args(model, flags)
    assert engine_args.model == "/models/m" and engine_args.served_model_name == ["m"]
    assert engine_args.max_model_len == 1024 and engine_args.dtype == "float32"
    assert engine_args.tensor_parallel_size == 2  # the command line wins over the config
    assert engine_args.gpu_memory_utilization == 0.5
    assert engine_args.disable_log_stats is False


def test_a_flag_equal_to_vllms_default_still_wins(parser) -> None:
    model = resolved(engine_args={"dtype": "float32", "tensor_parallel_size": 4})
    engine_args = build_engine_args(model, explicit_flags(parser, ["--dtype", "auto", "--tensor-parallel-size", "1"]))
    assert (engine_args.dtype, engine_args.tensor_parallel_size) == ("auto", 1)


@pytest.mark.parametrize(
    ("engine_args", "message"),
    [
        ({"tensor_paralel_size": 2}, "m.engine_args.tensor_paralel_size: not a vLLM engine argument"),
        ({"model": "/etc"}, "m.engine_args.model: set by vif from the config's own fields"),
        ({"tokenizer": "/tmp/x"}, "m.engine_args.tokenizer: set by vif"),
    ],
)
def test_bad_engine_args_in_config(engine_args: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^conf.json: {re.escape(message)}"):
        build_engine_args(resolved(engine_args=engine_args), {})


def test_lora_adapters_turn_lora_on(parser) -> None:
    model = ResolvedModel(
        "m", ModelEntry(model_path="/models/m", engine_args={"max_lora_rank": 8}), "/models/m", None, "conf.json",
        {"pirate": "/models/pirate"},
    )  # fmt: skip
    engine_args = build_engine_args(model, explicit_flags(parser, ["--max-loras", "2"]))
    assert (engine_args.enable_lora, engine_args.max_lora_rank, engine_args.max_loras) == (True, 8, 2)
    assert build_engine_args(resolved(), {}).enable_lora is False
    model = dataclasses.replace(model, entry=ModelEntry(model_path="/models/m", engine_args={"enable_lora": False}))
    with pytest.raises(ConfigError, match=r"m\.engine_args\.enable_lora: lora_adapters need it on"):
        build_engine_args(model, {})


def test_unknown_flag_is_refused(parser) -> None:
    with pytest.raises(SystemExit):
        explicit_flags(parser, ["--tensor-paralel-size", "2"])


def test_every_vllm_flag_is_accepted(parser) -> None:
    flags = {o for a in parser._actions for o in a.option_strings}
    assert {"--tensor-parallel-size", "--pipeline-parallel-size", "--max-num-seqs", "--quantization"} <= flags


# The CPU KV cache: sized from the model and the free memory unless the user sized it.
SMOLLM2_CONFIG = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64}
BYTES_PER_TOKEN = 46_080  # float32


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr(args_module, "available_memory", lambda: AvailableMemory(16 * GiB, "MemAvailable 16.00 GiB"))
    return tmp_path


def on_disk(model_dir: Path, **entry: object) -> ResolvedModel:
    return ResolvedModel("m", ModelEntry(model_path=str(model_dir), **entry), str(model_dir), None, "conf.json")


def test_cpu_kv_cache_sized_from_the_model_and_memory(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vif.runtime.engine.args")
    engine_args = build_engine_args(on_disk(model_dir, max_model_len=2048, engine_args={"dtype": "float32"}), {})
    assert engine_args.kv_cache_memory_bytes == 4 * GiB  # a quarter of 16 GiB: 128 x 2048 tokens would need 11 GiB
    assert caplog.messages == [
        f"CPU KV cache: 4.00 GiB, {4 * GiB // BYTES_PER_TOKEN} tokens (1/4 of 16.00 GiB left after 0.00 GiB of "
        "weights; 128 sequences x 2048 tokens would need 11.25 GiB); available: MemAvailable 16.00 GiB"
    ]


def test_cpu_kv_cache_for_fewer_sequences_and_parallel_workers(parser, model_dir: Path) -> None:
    flags = explicit_flags(parser, ["--max-num-seqs", "4", "--tensor-parallel-size", "2"])
    engine_args = build_engine_args(on_disk(model_dir, max_model_len=2048, engine_args={"dtype": "float32"}), flags)
    assert engine_args.kv_cache_memory_bytes == 4 * 2048 * BYTES_PER_TOKEN // 2  # each worker holds half the heads


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--gpu-memory-utilization", "0.5"], {}),
        (["--kv-cache-memory-bytes", "1000000"], {}),
        ([], {"VLLM_CPU_KVCACHE_SPACE": "2"}),
    ],
)
def test_the_users_memory_setting_wins(
    parser, model_dir: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], environ: dict[str, str]
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    engine_args = build_engine_args(on_disk(model_dir), explicit_flags(parser, argv))
    assert engine_args.kv_cache_memory_bytes == (1000000 if "--kv-cache-memory-bytes" in argv else None)


def test_not_on_gpu(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(args_module.current_platform, "is_cpu", lambda: False)
    assert build_engine_args(on_disk(model_dir), {}).kv_cache_memory_bytes is None


def test_not_even_one_sequence_fits(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(args_module, "available_memory", lambda: AvailableMemory(GiB // 4, "MemAvailable 0.25 GiB"))
    with pytest.raises(ConfigError, match=r"^conf.json: m: the KV cache for one 8192-token sequence needs 0\.35 GiB"):
        build_engine_args(on_disk(model_dir, max_model_len=8192, engine_args={"dtype": "float32"}), {})


def test_an_unreadable_model_leaves_it_to_vllm(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (model_dir / "config.json").unlink()
    assert build_engine_args(on_disk(model_dir), {}).kv_cache_memory_bytes is None
    assert "cannot size the CPU KV cache from" in caplog.text
