"""vLLM engine arguments pass through from vLLM's own parser, layered on the config's."""

from __future__ import annotations

import pytest

from vif.runtime.cli import engine_parser
from vif.runtime.config import ConfigError, ModelEntry, ResolvedModel
from vif.runtime.engine.args import build_engine_args


def resolved(**entry: object) -> ResolvedModel:
    return ResolvedModel("m", ModelEntry(model_path="/models/m", **entry), "/models/m", None, "conf.json")


@pytest.fixture(scope="module")
def parser():
    return engine_parser()


def test_config_then_command_line(parser) -> None:
    model = resolved(max_model_len=1024, engine_args={"dtype": "float32", "tensor_parallel_size": 4})
    args = parser.parse_args(["--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.5"])
    engine_args = build_engine_args(model, args, vars(parser.parse_args([])))
    assert engine_args.model == "/models/m" and engine_args.served_model_name == ["m"]
    assert engine_args.max_model_len == 1024 and engine_args.dtype == "float32"
    assert engine_args.tensor_parallel_size == 2  # the command line wins over the config
    assert engine_args.gpu_memory_utilization == 0.5
    assert engine_args.disable_log_stats is False


def test_unknown_engine_arg_in_config(parser) -> None:
    with pytest.raises(ConfigError, match=r"conf.json: m.engine_args.tensor_paralel_size: not a vLLM engine argument"):
        build_engine_args(resolved(engine_args={"tensor_paralel_size": 2}), parser.parse_args([]), {})


def test_every_vllm_flag_is_accepted(parser) -> None:
    flags = {o for a in parser._actions for o in a.option_strings}
    assert {"--tensor-parallel-size", "--pipeline-parallel-size", "--max-num-seqs", "--quantization"} <= flags
