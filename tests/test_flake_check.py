"""`make flake-check`: the suite runs N times in one session and each test's failures are counted out of N."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "flake_check.py"

SUITE = """
import itertools

calls = itertools.count(1)


def test_fails_on_odd_runs():
    assert next(calls) % 2 == 0


def test_steady():
    pass
"""


def flake_check(tmp_path: Path, runs: int, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(body)
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", str(runs), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_counts_each_tests_failures_out_of_the_runs(tmp_path: Path) -> None:
    result = flake_check(tmp_path, 4, SUITE)
    assert result.returncode == 1, result.stdout
    assert "flake-check: 2 tests, 4 runs" in result.stdout
    assert "runs with no failure: 2 of 4" in result.stdout
    assert "  2 of 4   test_suite.py::test_fails_on_odd_runs (1, 3)" in result.stdout
    assert "test_steady" not in result.stdout.split("flake-check:")[1]


def test_a_suite_that_always_passes_exits_zero(tmp_path: Path) -> None:
    result = flake_check(tmp_path, 3, "def test_steady():\n    pass\n")
    assert result.returncode == 0, result.stdout
    assert "every test passed every run" in result.stdout
