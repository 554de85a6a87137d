"""The local model cache: one folder per source and commit, published only once every file is verified.

```
<root>/huggingface/<org>--<name>/<commit>/          the model, complete (holds .vif-complete)
<root>/huggingface/<org>--<name>/<commit>.partial/  a download in progress or interrupted: resumed from here
<root>/huggingface/<org>--<name>/<commit>.lock      held while one process fills it
```

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

import httpx

from vif.runtime.sources.fetch import Progress, RemoteFile, fetch_file
from vif.runtime.sources.huggingface import HubSource, list_files

log = logging.getLogger(__name__)

COMPLETE = ".vif-complete"
STALL_TIMEOUT = 30.0  # seconds without a byte before an attempt fails


def default_root() -> Path:
    """`$VIF_MODEL_CACHE`, else `~/.cache/vif/models`."""
    return Path(os.environ.get("VIF_MODEL_CACHE") or Path.home() / ".cache" / "vif" / "models")


ProgressFactory = Callable[[str, int], Progress]  # (what, total bytes) -> the callback a download reports to


def quiet(what: str, total: int) -> Progress:
    return lambda n: None


def ensure_hub_model(
    source: HubSource,
    root: Path | None = None,
    progress: ProgressFactory = quiet,
    stall_timeout: float = STALL_TIMEOUT,
    attempts: int = 5,
) -> Path:
    """The folder of `source`'s files in the cache, downloading what is missing; raises `DownloadError`."""
    timeout = httpx.Timeout(connect=10.0, read=stall_timeout, write=stall_timeout, pool=stall_timeout)
    with httpx.Client(timeout=timeout, follow_redirects=True, trust_env=False) as client:
        commit, files = list_files(client, source)
        folder = (root or default_root()) / "huggingface" / source.repo.replace("/", "--") / commit
        if (folder / COMPLETE).exists():
            log.info("%s: in the cache at %s", source.describe(), folder)
            return folder
        with _locked(folder):
            if not (folder / COMPLETE).exists():  # another process may have filled it while this one waited
                _fill(client, files, folder, progress(source.describe(), sum(f.size for f in files)), attempts, source)
    return folder


def _fill(
    client: httpx.Client, files: list[RemoteFile], folder: Path, progress: Progress, attempts: int, source: HubSource
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
        fetch_file(client, remote, partial, progress, attempts, source.headers)
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
