"""`vif-router`'s command line: what it accepts, what it refuses, and the app it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from vif.runtime.router.cli import main


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    started: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(app=app, **kwargs))
    assert main(argv) == 0
    return started


def test_starts_the_app_with_the_given_endpoints_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    started = run(
        ["--port", "9001", "--strategy", "least-load", "--endpoint", "http://a:8000/", "--endpoint", "http://b:8000",
         "--load-factor", "1.5", "--retries", "1", "--max-wait", "3", "--model-name", "smol",
         "--first-byte-timeout", "30", "--idle-timeout", "7"],
        monkeypatch,
    )  # fmt: skip
    router = started["app"].state.router
    assert started["port"] == 9001 and started["host"] == "127.0.0.1"
    assert [e.url for e in router.endpoints.members] == ["http://a:8000", "http://b:8000"]
    assert not router.endpoints.any_ready()  # probed first
    assert (router.settings.strategy, router.settings.load_factor, router.settings.retries) == ("least-load", 1.5, 1)
    assert (router.settings.max_wait, router.settings.model_name) == (3, "smol")
    assert router.proxy.strategy.name == "least-load"
    assert (router.proxy.first_byte_timeout, router.proxy.idle_timeout) == (30, 7)


def test_prefix_hash_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(["--endpoint", "http://a:8000"], monkeypatch)["app"].state.router.proxy.strategy.name == "prefix-hash"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "one of the arguments --endpoint --service is required"),
        (["--service", "model"], "--service is NAMESPACE/NAME"),
        (["--endpoint", "a:8000"], "not an http(s) URL"),
        (["--endpoint", "http://a:8000", "--strategy", "random"], "invalid choice"),
        (["--endpoint", "http://a:8000", "--load-factor", "0.5"], "at least 1"),
        (["--endpoint", "http://a:8000", "--retries", "-1"], "cannot be negative"),
        (["--endpoint", "http://a:8000", "--idle-timeout", "0"], "must be positive"),
        (
            ["--endpoint", "http://a:8000", "--strategy", "round-robin", "--session-affinity"],
            "needs --strategy prefix-hash",
        ),
        (["--endpoint", "http://a:8000", "--max-keys", "0"], "--max-keys and --max-cached-blocks must be at least 1"),
        (["--endpoint", "http://a:8000", "--max-cached-blocks", "0"], "--max-cached-blocks must be at least 1"),
        (["--endpoint", "http://a:8000", "--kv-events-port", "70000"], "--kv-events-port is a TCP port"),
    ],
)
def test_refusals(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_starts_without_vllm_or_torch() -> None:
    """The router runs in the runtime image but must not pay for the engine's imports."""
    code = "import sys, vif.runtime.router.cli, vif.runtime.router.app; print(sorted({'vllm', 'torch', 'pydantic'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    script = Path(sys.executable).parent / "vif-router"
    assert "--strategy" in subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout


def test_api_keys_come_from_the_environment_as_the_runtime_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIF_API_KEYS", "k1,k2")
    router = run(["--endpoint", "http://a:8000", "--api-key", "k0"], monkeypatch)["app"].state.router
    assert router.settings.api_keys == ("k0", "k1", "k2")


def test_a_blank_key_secret_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIF_API_KEYS", " ")
    with pytest.raises(SystemExit):
        main(["--endpoint", "http://a:8000"])
