"""The package layout: `vif.runtime` lives in runtime/, and nothing shadows the standard library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_runtime_maps_to_its_folder() -> None:
    import vif.runtime

    assert Path(vif.runtime.__file__).parent == REPO / "runtime"


def test_stdlib_operator_is_not_shadowed_from_the_checkout() -> None:
    code = "import operator, sys; print(operator.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "/lib/python3" in out and str(REPO / "operator") not in out


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "vif-runtime"
    assert script.exists()
    result = subprocess.run([str(script), "prepare-model", "--help"], capture_output=True, text=True, check=True)
    assert "--target" in result.stdout
