"""`vif-runtime serve` refuses a bad start-up with one line naming the file and field, and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vif.runtime.config import ConfigError, ResolvedModel, default_model


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "vif.runtime", "serve", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def test_bad_configs_stop_start_up(tmp_path: Path) -> None:
    config = tmp_path / "model_config.json"
    (tmp_path / "weights").mkdir()
    config.write_text(json.dumps({"m": {"model_path": "weights", "class_name": "os:system"}}))
    result = run_serve("--config", str(config), "--model-name", "m")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"vif-runtime serve: {config}: m.class_name: 'os:system' is not an allowed serving class")
    result = run_serve("--config", str(config), "--model-name", "other")
    assert result.returncode == 2
    assert "model name 'other' is not in the file" in result.stderr.strip().splitlines()[-1]


def test_help_lists_vif_and_vllm_flags() -> None:
    result = run_serve("--help")
    assert result.returncode == 0
    assert "--model-name" in result.stdout and "--limit-concurrency" in result.stdout
    assert "ParallelConfig" in result.stdout  # vLLM lists its flags by config group


def test_a_configured_key_source_without_keys_stops_start_up(tmp_path: Path, monkeypatch) -> None:
    from vif.runtime.app.live import LiveSources
    from vif.runtime.config import ConfigError

    empty = tmp_path / "keys"
    empty.write_text("\n  \n")
    cases = [
        (LiveSources(keys_file=empty), {}),
        (LiveSources(api_keys=(" ",)), {}),
        (LiveSources(), {"VIF_API_KEYS": " , "}),
    ]
    for sources, env in cases:
        monkeypatch.delenv("VIF_API_KEYS", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=r"empty key|holds no key"):
            sources.read()
    monkeypatch.setenv("VIF_API_KEYS", "k1, k2")
    empty.write_text("k3\nk4,k5\n")  # a key a line, or comma-separated as a Secret's value for $VIF_API_KEYS
    keys = LiveSources(api_keys=("k0",), keys_file=empty).read().keys
    assert len(keys.owners) == 6 and all(keys.accepts(f"Bearer k{i}".encode()) for i in range(6))
    result = run_serve("--api-keys-file", str(tmp_path / "keys-missing"))
    assert result.returncode == 2 and "keys-missing" in result.stderr.strip().splitlines()[-1]


def chosen(argv: list[str], named: str | None = None, **flags: Any) -> ResolvedModel:
    from vif.runtime.cli import _chosen_model, own_parser

    return _chosen_model(own_parser().parse_args(argv), named, flags)


def test_a_model_folder_is_served_as_vllm_serve_takes_it(tmp_path: Path) -> None:
    """A Hugging Face id is downloaded first: tests/runtime/sources/test_serve_hub_model.py."""
    weights = tmp_path / "SmolLM2"
    weights.mkdir()
    model = chosen([], str(weights))
    assert (model.name, model.model, model.entry.model_path) == (str(weights), str(weights), str(weights))
    assert model.entry.engine_args == default_model().entry.engine_args
    assert chosen([], str(weights), served_model_name=["smol"]).name == "smol"
    assert chosen(["--model-name", "smol"], str(weights)).name == "smol"
    assert chosen([], None, model=str(weights)).model == str(weights)  # vLLM's --model, as MODEL


@pytest.mark.parametrize(
    ("argv", "named", "flags", "message"),
    [
        (["--config", "c.json"], "org/m", {}, "give MODEL or --config, not both"),
        ([], "org/m", {"model": "org/other"}, "give the model once"),
        ([], "org/m", {"served_model_name": ["a", "b"]}, "under one name"),
        ([], None, {"served_model_name": ["a"]}, "--served-model-name names MODEL"),
        ([], "no-such-dir", {}, "neither a model directory nor a Hugging Face id"),
        ([], "../org/m", {}, "neither a model directory nor a Hugging Face id"),
    ],
)
def test_the_model_is_given_once_and_served_under_one_name(
    argv: list[str], named: str | None, flags: dict[str, Any], message: str
) -> None:
    with pytest.raises((LookupError, ConfigError), match=message):
        chosen(argv, named, **flags)


def test_an_unknown_model_stops_start_up_with_one_line() -> None:
    result = run_serve("no/such/model", "--dtype", "float32")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "vif-runtime serve: no/such/model: neither a model directory nor a Hugging Face id (ORG/NAME)"
    )


def test_without_a_device_serve_stops_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """vLLM's GPU build on a machine without a GPU (`make test-gpu-env` shows it on the GPU lock): one line, not
    vLLM's traceback from defining its own flags."""
    from vif.runtime import cli
    from vif.runtime.engine import args

    monkeypatch.setattr(args.current_platform, "is_unspecified", lambda: True)
    assert cli.main(["serve", "HuggingFaceTB/SmolLM2-135M-Instruct"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vif-runtime serve: this vLLM build found no device to run on"), (
        lines
    )
