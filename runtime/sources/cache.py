"""The local model cache: one folder per source and version, published only once every file is verified.

```
<root>/huggingface/<org>--<name>/<commit>/          the model, complete (holds .vif-complete)
<root>/huggingface/<org>--<name>/<commit>.partial/  a download in progress or interrupted: resumed from here
<root>/huggingface/<org>--<name>/<commit>.lock      held while one process fills it
<root>/s3/<bucket>/<prefix>/<listing hash>/         the same for an S3 prefix (s3.py: S3 has no commit)
```

A caller that must name the folder before the commit is known (the operator writes the engine's model path into
its config before any pod runs) asks for a `link`: a symlink, made or moved atomically, to the folder.

A folder without `.vif-complete` is never handed to the engine, so nothing half-downloaded is served. Processes
sharing the cache (replicas on one node, pods on a shared volume) take the lock in turn: the first downloads, the
others wait and find the folder complete.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import httpx

from vif.runtime.sources.fetch import DownloadError, Progress, RemoteFile, fetch_file
from vif.runtime.sources.huggingface import HubSource
from vif.runtime.sources.s3 import S3Source

log = logging.getLogger(__name__)

COMPLETE = ".vif-complete"
STALL_TIMEOUT = 30.0  # seconds without a byte before an attempt fails


def default_root() -> Path:
    """`$VIF_MODEL_CACHE`, else `~/.cache/vif/models`."""
    return Path(os.environ.get("VIF_MODEL_CACHE") or Path.home() / ".cache" / "vif" / "models")


ProgressFactory = Callable[[str, int], Progress]  # (what, total bytes) -> the callback a download reports to


def quiet(what: str, total: int) -> Progress:
    return lambda n: None


def logged(what: str, total: int, every: float = 10.0) -> Progress:
    """Progress as log lines, at most one per `every` seconds and one at the end: bytes, share, rate, time left
    (a pod's log is read line by line; a terminal bar is not)."""
    started = last = time.monotonic()
    done = 0

    def update(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last < every and done < total:
            return
        last = now
        rate = done / max(now - started, 1e-3)
        left = f", about {(total - done) / rate:.0f} s left" if done < total and rate > 0 else ""
        log.info("%s: %.1f of %.1f MB (%.0f %%), %.1f MB/s%s", what, done / 1e6, total / 1e6,
                 100 * done / max(total, 1), rate / 1e6, left)  # fmt: skip

    return update


class ModelSource(Protocol):
    """Where a model comes from (`HubSource`, `S3Source`): its files at one version, and how to describe it."""

    @property
    def headers(self) -> dict[str, str]: ...

    @property
    def cache_dir(self) -> str: ...

    def describe(self) -> str: ...

    def list_files(self, client: httpx.Client) -> tuple[str, list[RemoteFile]]: ...


def remote_source(model: str, revision: str | None = None) -> ModelSource:
    """`s3://bucket/prefix`, or a Hugging Face `ORG/NAME` at `revision`, with the environment's endpoint and
    credentials."""
    if model.startswith("s3://"):
        if revision:
            raise DownloadError(f"{model}: an S3 prefix has no revisions (--revision)")
        return S3Source.from_uri(model)
    return HubSource.from_environment(model, revision)


def ensure_model(
    source: ModelSource,
    root: Path | None = None,
    progress: ProgressFactory = quiet,
    stall_timeout: float = STALL_TIMEOUT,
    attempts: int = 5,
    link: Path | None = None,
) -> Path:
    """The folder of `source`'s files in the cache, downloading what is missing, and `link` pointing at it if
    given; raises `DownloadError`."""
    timeout = httpx.Timeout(connect=10.0, read=stall_timeout, write=stall_timeout, pool=stall_timeout)
    with httpx.Client(timeout=timeout, follow_redirects=True, trust_env=False) as client:
        version, files = source.list_files(client)
        folder = (root or default_root()) / source.cache_dir / version
        if (folder / COMPLETE).exists():
            log.info("%s: in the cache at %s", source.describe(), folder)
        else:
            with _locked(folder):
                if not (folder / COMPLETE).exists():  # another process may have filled it while this one waited
                    total = sum(f.size for f in files)
                    _fill(client, files, folder, progress(source.describe(), total), attempts, source)
    if link is not None:
        _point(link, folder)
    return folder


def _point(link: Path, folder: Path) -> None:
    """`link` -> `folder`, relative (it resolves the same wherever the volume is mounted), replaced atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    staged = link.with_name(f".{link.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    staged.symlink_to(os.path.relpath(folder, link.parent))
    staged.replace(link)


def _fill(
    client: httpx.Client, files: list[RemoteFile], folder: Path, progress: Progress, attempts: int, source: ModelSource
) -> None:
    staging = folder.with_name(folder.name + ".partial")
    started = time.monotonic()
    for remote in files:
        target = staging / remote.path
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        if target.exists():  # verified by an earlier, interrupted run
            progress(target.stat().st_size)
            continue
        if partial.exists():
            progress(partial.stat().st_size)
        try:
            fetch_file(client, remote, partial, progress, attempts, source.headers)
        except DownloadError as exc:  # named by its file; the status and the log name the model too
            raise DownloadError(f"{source.describe()}: {exc}") from None
        partial.rename(target)
    (staging / COMPLETE).write_text(f"{source.describe()}\n")
    staging.rename(folder)
    total = sum(f.size for f in files)
    log.info("%s: %d files, %d bytes in %.1f s into %s", source.describe(), len(files), total,
             time.monotonic() - started, folder)  # fmt: skip


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
