"""`make flake-check`: the suite runs N times in one session and each test's failures are counted out of N."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "flake_check.py"

FLAKY = """
import itertools

calls = itertools.count(1)


def test_fails_on_odd_runs():
    assert next(calls) % 2 == 0
"""

STEADY = "def test_steady():\n    pass\n"


def flake_check(tmp_path: Path, runs: int, suites: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Each suite in a folder of its own with a conftest, as in the repo (pytest then looks hooks up per folder)."""
    for folder, body in suites.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "conftest.py").write_text("")
        (tmp_path / folder / f"test_{folder}.py").write_text(body)
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", str(runs), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_counts_each_tests_failures_out_of_the_runs(tmp_path: Path) -> None:
    result = flake_check(tmp_path, 4, {"flaky": FLAKY, "steady": STEADY})
    assert result.returncode == 1, result.stdout
    summary = result.stdout.split("flake-check:")[1]
    assert summary.startswith(" 2 tests, 4 runs"), result.stdout
    assert "runs with no failure: 2 of 4" in summary
    assert "  2 of 4   flaky/test_flaky.py::test_fails_on_odd_runs (1, 3)" in summary
    assert "test_steady" not in summary


def test_a_suite_that_always_passes_exits_zero(tmp_path: Path) -> None:
    result = flake_check(tmp_path, 3, {"steady": STEADY, "other": STEADY.replace("steady", "other")})
    assert result.returncode == 0, result.stdout
    assert "every test passed every run" in result.stdout


FIXTURED = """
import pytest


@pytest.fixture
def namespace(tmp_path):
    (tmp_path / "made").write_text("")
    yield tmp_path
    (tmp_path / "made").unlink()


@pytest.mark.parametrize("kind", ["a", "b"])
def test_uses_a_fresh_fixture_each_run(namespace, kind):
    assert (namespace / "made").exists() and len(list(namespace.iterdir())) == 1
"""


def test_each_run_gets_fresh_function_fixtures(tmp_path: Path) -> None:
    """Repeating one collected item would hand its second run the first run's torn-down fixtures."""
    result = flake_check(tmp_path, 3, {"fixtured": FIXTURED})
    assert result.returncode == 0, result.stdout
    assert "flake-check: 2 tests, 3 runs" in result.stdout
    assert "runs with no failure: 3 of 3" in result.stdout
    assert "6 passed" in result.stdout
