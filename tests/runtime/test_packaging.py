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
    """`python -c`/`-m` put the working directory first on sys.path; -S leaves out site hooks, as on a fresh
    machine before anything is installed. operator/ has no __init__.py, so the stdlib module still wins."""
    code = "import operator; print(operator.__file__)"
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "/lib/python3" in out.stdout and str(REPO / "operator") not in out.stdout
    assert not (REPO / "operator" / "__init__.py").exists()


def test_operator_maps_to_its_folder() -> None:
    import vif.operator.crd

    assert Path(vif.operator.crd.__file__).parent == REPO / "operator"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "vif-runtime"
    assert script.exists()
    result = subprocess.run([str(script), "prepare-model", "--help"], capture_output=True, text=True, check=True)
    assert "--target" in result.stdout
