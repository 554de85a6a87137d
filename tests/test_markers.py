"""A folder's prerequisite marker (`mark_folder` in its conftest) is on its tests before `-m` selects by markers:
otherwise `make unit` runs tests that need a plane, an engine or images, and fails without them."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers.dockerfiles import REPO

# The folders whose conftest marks every test in them (tests/runtime/sources marks only the tests that start servers).
MARKED_FOLDERS = (
    "e2e/",
    "tests/images/",
    "tests/operator/integration/",
    "tests/router/cluster/",
    "tests/router/integration/",
    "tests/runtime/integration/",
)


def test_make_unit_collects_no_test_of_a_marked_folder() -> None:
    selection = re.search(r'^\t\$\(VENV\)/bin/pytest -m "([^"]+)"', (REPO / "Makefile").read_text(), re.M)
    assert selection, "make unit's pytest line"
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", selection[1]]
    collected = subprocess.run(collect, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    tests = [line for line in collected.stdout.splitlines() if "::" in line]
    assert any(test.startswith("tests/") for test in tests), collected.stdout  # it collected something
    assert [test for test in tests if test.startswith(MARKED_FOLDERS)] == []
