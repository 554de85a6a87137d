"""The images `make images` built (e2e/images/build.sh), and containers of them: commands run as a kubelet would
run a pod's (user, environment, mounts), on the host's network. buildah where no Docker engine runs."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class BuiltImages:
    """What e2e/images/build.sh wrote to .cache/images/images.json; `make` passes its path as VIF_IMAGES."""

    tool: str  # "buildah" or "docker"
    global_flags: list[str]  # buildah's store: driver, root, runroot
    operator: str
    runtime: str


def built_images() -> BuiltImages | None:
    path = os.environ.get("VIF_IMAGES")
    return BuiltImages(**json.loads(Path(path).read_text())) if path else None


def require_images() -> BuiltImages:
    """Fail (never skip) when the images are not built."""
    images = built_images()
    if images is None:
        pytest.fail("VIF_IMAGES is not set: build the images and run these tests with `make test-images`")
    return images


@dataclass(frozen=True)
class Mount:
    host: Path
    path: str
    read_only: bool = False


class Container:
    """A container of `image` (buildah: one working container for every command; Docker: one per command)."""

    def __init__(self, images: BuiltImages, image: str) -> None:
        self.images = images
        self.image = image
        self.name = f"vif-test-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Container:
        if self.images.tool == "buildah":
            self.tool("from", "--pull=never", "--quiet", "--name", self.name, self.image)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.images.tool == "buildah":
            self.tool("rm", self.name)

    def tool(self, *args: str) -> str:
        """The container tool's output for `args`."""
        return subprocess.run(
            [self.images.tool, *self.images.global_flags, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout

    def config(self) -> dict[str, Any]:
        """The image's OCI config (User, Env, Entrypoint, Cmd, Labels, ...)."""
        if self.images.tool == "buildah":
            return json.loads(self.tool("inspect", "--type", "image", self.image))["OCIv1"]["config"]
        return json.loads(self.tool("image", "inspect", self.image))[0]["Config"]

    def command(
        self,
        argv: list[str],
        user: str | None = None,
        env: dict[str, str] | None = None,
        mounts: tuple[Mount, ...] = (),
    ) -> list[str]:
        """The host command that runs `argv` in the container, as `user` (default: the image's), with `env` added to
        the image's environment and `mounts` bound."""
        options = ["--network", "host"]
        options += ["--user", user] if user else []
        options += [f"--env={name}={value}" for name, value in (env or {}).items()]
        options += [f"--volume={m.host}:{m.path}" + (":ro" if m.read_only else "") for m in mounts]
        if self.images.tool == "buildah":
            return [
                "buildah",
                *self.images.global_flags,
                "run",
                "--isolation",
                "chroot",
                *options,
                self.name,
                "--",
                *argv,
            ]
        return ["docker", "run", "--rm", "--init", *options, "--entrypoint", argv[0], self.image, *argv[1:]]

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv, **kwargs), capture_output=True, text=True, check=False, timeout=300)
