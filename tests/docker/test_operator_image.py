"""Dockerfile.operator and its lock against the operator it packages."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers.dockerfiles import (
    CPU_LOCK,
    DEV_LOCK,
    OPERATOR_LOCK,
    OPERATOR_ROOTS,
    REPO,
    Stage,
    exec_form,
    healthcheck_url,
    read_lock,
    runs,
    stage,
)


def test_operator_entrypoint(operator_stages: list[Stage]) -> None:
    s = stage(operator_stages, "operator")
    assert operator_stages[-1] is s
    assert exec_form(s.last("ENTRYPOINT") or "null") == ["vif-operator"]
    assert s.env()["PATH"].startswith("/opt/venv/bin:")


def test_operator_image_installs_through_its_install_sh(operator_stages: list[Stage]) -> None:
    assert "/src/operator/scripts/install.sh /opt/venv/bin/python" in runs(stage(operator_stages, "build"))
    assert "pip install" not in runs(stage(operator_stages, "build"))
    assert "--from=build /opt/venv /opt/venv" in stage(operator_stages, "operator").all("COPY")
    script = (REPO / "operator" / "scripts" / "install.sh").read_text()
    assert '--no-deps --require-hashes --requirement "$here/operator/requirements.lock"' in script
    assert '--no-deps --no-build-isolation "$here"' in script


def test_operator_ports_and_health_match_its_cli(operator_stages: list[Stage]) -> None:
    import vif.operator.cli

    source = Path(vif.operator.cli.__file__).read_text()
    defaults = dict(re.findall(r'"--(health-port|metrics-port)", type=int, default=(\d+)', source))
    assert set(defaults) == {"health-port", "metrics-port"}, "vif-operator's port defaults not found"
    assert 'liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz"' in source
    s = stage(operator_stages, "operator")
    assert s.all("EXPOSE") == [f"{defaults['health-port']} {defaults['metrics-port']}"]
    assert healthcheck_url(s) == f"http://127.0.0.1:{defaults['health-port']}/healthz"


# --- the operator's lock ------------------------------------------------------------------------------------------


def requirement_closure(roots: tuple[str, ...]) -> set[str]:
    """The installed distributions `roots` need at run time (no extras), by their installed metadata."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in md.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_operator_lock_pins_the_installed_versions() -> None:
    pins = read_lock(OPERATOR_LOCK)
    for root in OPERATOR_ROOTS:
        assert pins.get(canonicalize_name(root)) == md.version(root), f"{root}: lock and installed venv differ"
    for name, version in pins.items():
        assert md.version(name) == version, f"{name}: locked {version}, installed {md.version(name)}"
    venv = read_lock(CPU_LOCK) | read_lock(DEV_LOCK)
    assert {n: venv.get(n) for n in pins} == pins, "operator/requirements.lock drifted from runtime/requirements/"


def test_operator_lock_is_exactly_its_dependency_closure() -> None:
    assert set(read_lock(OPERATOR_LOCK)) == requirement_closure(OPERATOR_ROOTS)


def test_operator_lock_covers_everything_vif_operator_imports() -> None:
    top_level: set[str] = set()
    for path in (REPO / "operator").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                top_level |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top_level.add(node.module.split(".")[0])
    third_party = top_level - set(sys.stdlib_module_names) - {"vif"}
    providers = md.packages_distributions()
    locked = set(read_lock(OPERATOR_LOCK))
    for module in sorted(third_party):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists & locked, f"vif.operator imports {module} (from {dists or 'nowhere'}), not in {OPERATOR_LOCK.name}"
    assert {canonicalize_name(r) for r in OPERATOR_ROOTS} <= {
        canonicalize_name(d) for m in third_party for d in providers.get(m, [])
    }, "a root of the lock is no longer imported by vif.operator"
