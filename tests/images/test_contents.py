"""What is in the built images: their users, no compiler, test tools, caches or build-time configuration, and
their OCI labels."""

from __future__ import annotations

import tomllib

import pytest
import yaml

from helpers.dockerfiles import REPO
from helpers.images import Container
from vif.operator.builders.security import pod_security_context

ROOT = "0:0"  # to see every file


def test_runtime_runs_as_the_uid_of_the_operators_pod_template(runtime: Container) -> None:
    uid, gid = pod_security_context()["runAsUser"], pod_security_context()["runAsGroup"]
    assert runtime.config()["User"] == f"{uid}:{gid}"
    assert runtime.run(["id", "-u"]).stdout.split() == [str(uid)]  # the image's own user: no --user given


def test_operator_runs_as_the_charts_uid(operator: Container) -> None:
    values = yaml.safe_load((REPO / "charts" / "vif-operator" / "values.yaml").read_text())
    assert operator.run(["id", "-u"]).stdout.split() == [str(values["podSecurityContext"]["runAsUser"])]
    result = operator.run([*operator.config()["Entrypoint"], "--help"])
    assert result.returncode == 0 and "--runtime-image" in result.stdout, result.stderr


def test_runtime_has_no_compiler(runtime: Container) -> None:
    found = runtime.run(["sh", "-c", "for c in gcc cc g++ c++ clang; do command -v $c; done; true"])
    assert found.stdout.split() == []


def test_runtime_has_no_test_or_lint_tools(runtime: Container) -> None:
    tools = ("pytest", "hypothesis", "schemathesis", "ruff", "mypy", "peft", "kopf")
    code = f"import importlib.util as u; print(*[m for m in {tools!r} if u.find_spec(m)])"
    result = runtime.run(["python", "-c", code])
    assert (result.returncode, result.stdout.split()) == (0, []), result.stderr


@pytest.mark.parametrize("name", ["runtime", "operator"])
def test_images_hold_no_cache_nor_build_time_configuration(name: str, request: pytest.FixtureRequest) -> None:
    container: Container = request.getfixturevalue(name)
    script = """
        find / -xdev -path /proc -prune -o -path '*/.cache/pip' -print
        find /var/lib/apt/lists /var/cache/apt -type f ! -name lock -print
        find /root /home/vif -mindepth 1 ! -name .bashrc ! -name .profile ! -name .bash_logout -print
        [ -s /etc/pip.conf ] && echo /etc/pip.conf  # the build's, mounted: buildah 1.28 leaves an empty file
        true
    """
    result = container.run(["sh", "-c", script], user=ROOT)
    assert result.stdout.split() == [], result.stderr


@pytest.mark.parametrize("name", ["runtime", "operator"])
def test_images_carry_oci_labels(name: str, request: pytest.FixtureRequest) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    labels = request.getfixturevalue(name).config()["Labels"]
    assert labels["org.opencontainers.image.source"] not in ("", "unknown")  # make images passes the git remote
    assert labels["org.opencontainers.image.version"] == project["version"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
