"""Reading Dockerfiles for tests: stages, their instructions, and the paths they share with the code."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
RUNTIME_DOCKERFILE = REPO / "Dockerfile.runtime"
OPERATOR_DOCKERFILE = REPO / "Dockerfile.operator"
OPERATOR_LOCK = REPO / "operator" / "requirements.lock"
CPU_LOCK = REPO / "runtime" / "requirements" / "cpu.lock"
DEV_LOCK = REPO / "runtime" / "requirements" / "dev.lock"
GPU_LOCK = REPO / "runtime" / "requirements" / "gpu.lock"
BOOTSTRAP_LOCK = REPO / "runtime" / "requirements" / "bootstrap.lock"
LOCKS = (CPU_LOCK, DEV_LOCK, GPU_LOCK, BOOTSTRAP_LOCK, OPERATOR_LOCK)
HADOLINT_VERSION = "2.15.1"
IMAGE_UID = "10001"
# What the operator's own code imports from outside the standard library, and so what its lock is built from.
OPERATOR_ROOTS = ("kopf", "kubernetes", "pydantic", "PyYAML", "prometheus_client")


def read_lock(path: Path) -> dict[str, str]:
    """{canonical name: version} of a lock (runtime/scripts/lock.py writes them): `name==version` lines, each
    followed by its `--hash=sha256:...` continuation lines."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip().removesuffix("\\").strip()
        if line and not line.startswith(("#", "--hash=sha256:")):
            name, sep, version = line.partition("==")
            assert sep and version, f"{path.name}: not pinned: {line}"
            pins[canonicalize_name(name)] = version
    return pins


def lock_hashes(path: Path) -> dict[str, list[str]]:
    """{canonical name: [sha256, ...]} of a lock."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==", line):
            current = canonicalize_name(match[1])
            found[current] = []
        elif match := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            found[current].append(match[1])
    return found


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        pairs = [shlex.split(args) for args in self.all("ENV")]
        return dict(p.split("=", 1) for pair in pairs for p in pair)


def parse(path: Path) -> list[Stage]:
    """Stages of a Dockerfile: instructions with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name}: a continuation line runs off the end"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?: AS (\S+))?", args, flags=re.IGNORECASE)
            assert match, f"{path.name}: cannot read FROM {args}"
            stages.append(Stage(match.group(2) or str(len(stages)), match.group(1)))
        elif keyword != "ARG" or stages:  # ARGs before the first FROM belong to no stage
            assert stages, f"{path.name}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def stage(stages: list[Stage], name: str) -> Stage:
    by_name = {s.name: s for s in stages}
    assert name in by_name, f"no stage named {name!r}: {sorted(by_name)}"
    return by_name[name]


def chain(stages: list[Stage], name: str) -> list[Stage]:
    """Stage `name`, then the stages it is built FROM, nearest first."""
    by_name = {s.name: s for s in stages}
    found = [stage(stages, name)]
    while found[-1].base in by_name:
        found.append(by_name[found[-1].base])
    return found


def inherited(stages: list[Stage], name: str, keyword: str) -> str | None:
    """The last `keyword` in stage `name` or, failing that, in the stages it is built FROM."""
    return next((s.last(keyword) for s in chain(stages, name) if s.last(keyword) is not None), None)


def exec_form(args: str) -> list[str]:
    """An exec-form (JSON array) CMD/ENTRYPOINT/HEALTHCHECK CMD."""
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return value


def runs(s: Stage) -> str:
    return "\n".join(s.all("RUN"))


def healthcheck_url(s: Stage) -> str:
    check = s.last("HEALTHCHECK")
    assert check is not None, f"stage {s.name}: no HEALTHCHECK"
    command = exec_form(check.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"], "probe with the image's Python: no curl in the image"
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)['\"]", command[2])
    assert match, command
    return match.group(0)[:-1]
