"""What the GPU image's environment can show on a machine without a GPU, run by that environment's Python
(`make test-gpu-env`): every module of vif.runtime imports (the image holds no operator), vif-router starts, and
`vif-runtime serve` stops at once with one line that says no GPU is present.

    python -P e2e/gpu/check_env.py VENV MODEL_DIR
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path


def import_everything() -> int:
    """Imports every module of vif.runtime from the installed package (not the checkout: -P)."""
    import vif.runtime

    count = 0
    for module in pkgutil.walk_packages(vif.runtime.__path__, "vif.runtime."):
        importlib.import_module(module.name)
        count += 1
    return count


def main() -> int:
    venv, model = Path(sys.argv[1]), Path(sys.argv[2])
    print(f"imported {import_everything()} modules of vif.runtime")
    subprocess.run([venv / "bin" / "vif-router", "--help"], check=True, capture_output=True)
    print("vif-router --help: ok")
    serve = subprocess.run(
        [venv / "bin" / "vif-runtime", "serve", str(model)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    last = serve.stderr.strip().splitlines()[-1] if serve.stderr.strip() else ""
    if serve.returncode != 1 or not last.startswith("vif-runtime serve: this vLLM build found no device"):
        print(f"vif-runtime serve: exit {serve.returncode}, not the one line expected:\n{serve.stderr[-3000:]}")
        return 1
    print(f"vif-runtime serve: exit 1, {last!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
