"""A real Hugging Face-compatible hub for the tests: olah (a self-hosted Hub mirror, PyPI) serving git repositories
that a test lays out as the Hub stores them (large files as LFS pointers, their contents in .git/lfs/objects).

`make test-servers` installs olah into its own venv under ~/.cache/vif/tools (by version); the Hub's HTTP API is
then what huggingface_hub and vif's downloader use: `HF_ENDPOINT=<url>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.processes import answers, free_port, stop_group
from helpers.waits import wait_for

OLAH_VERSION = "0.5.4"
OLAH = Path(os.environ.get("VIF_TOOLS", Path.home() / ".cache/vif/tools")) / f"olah-{OLAH_VERSION}/bin/olah-cli"
LFS_MIN_BYTES = 1 << 20  # files from this size are stored as LFS pointers, as the Hub stores weights


@dataclass
class HubServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    mirrors: Path
    added_at: dict[str, int] = field(default_factory=dict)  # repo -> the log's size when it was (re)made

    def add_repo(self, repo: str, files: dict[str, Path], corrupt: frozenset[str] = frozenset()) -> str:
        """A model repository `org/name` on branch main holding `files` (path in the repo -> file); the LFS
        objects of the `corrupt` paths get one byte flipped, so they no longer match their pointers. Its commit."""
        where = self.mirrors / "models" / repo
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        git = ["git", "-C", str(where), "-c", "user.name=vif tests", "-c", "user.email=tests@vif.invalid"]
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
        for path, source in files.items():
            (where / path).parent.mkdir(parents=True, exist_ok=True)
            if source.stat().st_size < LFS_MIN_BYTES:
                shutil.copyfile(source, where / path)
                continue
            sha256 = file_sha256(source)
            (where / path).write_text(
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {source.stat().st_size}\n"
            )
            obj = where / ".git/lfs/objects" / sha256[:2] / sha256[2:4] / sha256
            obj.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, obj)
            if path in corrupt:
                with obj.open("r+b") as f:
                    f.seek(obj.stat().st_size // 2)
                    byte = f.read(1)
                    f.seek(-1, os.SEEK_CUR)
                    f.write(bytes([byte[0] ^ 0xFF]))
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "upload"], check=True)
        self.added_at[repo] = self.log.stat().st_size
        return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    def file_requests(self, repo: str) -> list[str]:
        """The file downloads of `repo` since it was last made, in the server's own access log: one
        `GET .../resolve/...` each (a session may make a repository again, as `make flake-check` does)."""
        pattern = re.compile(rf'"GET /{re.escape(repo)}/resolve/[^ ]+ HTTP/1.1" 200')
        with self.log.open("rb") as f:
            f.seek(self.added_at.get(repo, 0))
            lines = f.read().decode(errors="replace").splitlines()
        return [line for line in lines if pattern.search(line)]


def model_files() -> dict[str, Path]:
    """The default model's files as its Hub repository holds them (not vif's own marker)."""
    from vif.runtime.model_prep import default_model_path

    folder = default_model_path()
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.name != "vif-model.json"}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 23):
            h.update(block)
    return h.hexdigest()


def start_hub(workdir: Path) -> HubServer:
    """olah on a free port, offline (nothing is fetched from huggingface.co), serving the repositories under
    `workdir/mirrors`; fails with its log if it does not answer in time."""
    if not OLAH.exists():
        raise RuntimeError(f"{OLAH} is missing: run `make test-servers`")
    port = free_port()
    mirrors, repos = workdir / "mirrors", workdir / "repos"
    mirrors.mkdir()
    repos.mkdir()
    config = workdir / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{repos}"\nmirrors-path = ["{mirrors}"]\n'
        f'mirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        "[accessibility]\noffline = true\n"
    )
    log = workdir / "olah.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(OLAH), "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    probe = f"{url}/api/models/no/such/revision/main"  # any answer at all: it is up
    with contextlib.suppress(AssertionError):  # a timeout is reported below, with the server's log
        wait_for(lambda: proc.poll() is not None or answers(probe), "olah answering", timeout=60, every=0.2)
    if proc.poll() is not None or not answers(probe):
        stop_group(proc, grace=5)
        pytest.fail(f"olah did not answer on {url}:\n{log.read_text(errors='replace')[-3000:]}")
    return HubServer(url, proc, log, mirrors)


@contextlib.contextmanager
def running_hub(workdir: Path) -> Iterator[HubServer]:
    server = start_hub(workdir)
    try:
        yield server
    finally:
        stop_group(server.proc, grace=10)
