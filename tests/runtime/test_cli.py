"""`vif-runtime serve` refuses a bad start-up with one line naming the file and field, and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


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
    from vif.runtime.cli import _api_keys, own_parser

    empty = tmp_path / "keys"
    empty.write_text("\n  \n")
    cases = [(["--api-keys-file", str(empty)], {}), (["--api-key", " "], {}), ([], {"VIF_API_KEYS": " , "})]
    for argv, env in cases:
        monkeypatch.delenv("VIF_API_KEYS", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(LookupError, match=r"empty key|holds no key"):
            _api_keys(own_parser().parse_args(argv))
    monkeypatch.setenv("VIF_API_KEYS", "k1, k2")
    empty.write_text("k3\n")
    assert _api_keys(own_parser().parse_args(["--api-key", "k0", "--api-keys-file", str(empty)])) == (
        "k0",
        "k1",
        "k2",
        "k3",
    )
    result = run_serve("--api-keys-file", str(tmp_path / "keys-missing"))
    assert result.returncode == 2 and "keys-missing" in result.stderr.strip().splitlines()[-1]
