"""vLLM engine arguments pass through from vLLM's own parser, layered on the config's."""

from __future__ import annotations

import re

import pytest

from vif.runtime.cli import engine_parser
from vif.runtime.config import ConfigError, ModelEntry, ResolvedModel
from vif.runtime.engine.args import build_engine_args, explicit_flags


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


def test_unknown_flag_is_refused(parser) -> None:
    with pytest.raises(SystemExit):
        explicit_flags(parser, ["--tensor-paralel-size", "2"])


def test_every_vllm_flag_is_accepted(parser) -> None:
    flags = {o for a in parser._actions for o in a.option_strings}
    assert {"--tensor-parallel-size", "--pipeline-parallel-size", "--max-num-seqs", "--quantization"} <= flags
