"""Fetching one file over HTTP into a partial file: resumed where it stopped, retried with backoff, verified.

- A partial file left by an earlier attempt (or an earlier process) is continued with `Range: bytes=N-`; a server
  that ignores the range answers 200 and the file starts again from zero, so the result is right either way.
- No byte for `stall_timeout` seconds is a failure, never a hang (kserve#5611: a storage initializer waiting
  forever on a stalled Hugging Face download). A failure is retried `attempts` times in all, waiting 1, 2, 4, ...
  seconds (at most 30) between attempts; each retry resumes.
- A 401, 403 or 404 is not retried: asking again gives the same answer.
- The file is verified against the size and the digest its source lists before it counts as fetched.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DIGESTS = ("sha256", "git-blob-sha1", "md5")


class DownloadError(Exception):
    """A model could not be fetched; the message names the file and the cause."""


class DownloadIncomplete(Exception):
    """The server closed the response early, or answered a range oddly: retried, resuming."""


@dataclass(frozen=True)
class Digest:
    """A checksum as the source lists it: Hugging Face's LFS sha256 or git blob sha1, an S3 ETag's MD5."""

    kind: str
    hex: str

    def hasher(self, size: int) -> hashlib._Hash:
        if self.kind == "git-blob-sha1":  # git hashes a header, then the content
            h = hashlib.sha1(usedforsecurity=False)
            h.update(b"blob %d\0" % size)
            return h
        return hashlib.new(self.kind, usedforsecurity=False)


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the model's folder
    size: int
    url: str
    digest: Digest | None = None


Progress = Callable[[int], object]  # called with the bytes just written (tqdm.update fits)


def checked_relative(path: str) -> str:
    """A listed file's path, refused if it would land outside the model's folder."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise DownloadError(f"{path!r}: not a relative path inside the model's folder")
    return path


def fetch_file(
    client: httpx.Client,
    remote: RemoteFile,
    partial: Path,
    progress: Progress,
    attempts: int = 5,
    headers: dict[str, str] | None = None,
) -> None:
    """`remote` into `partial`, complete and verified on return; raises `DownloadError`."""
    for attempt in range(1, attempts + 1):
        try:
            _fetch_once(client, remote, partial, progress, headers or {})
            break
        except (httpx.TransportError, DownloadIncomplete) as exc:
            cause = _describe(exc, client)
            if attempt == attempts:
                raise DownloadError(f"{remote.path}: {cause}, after {attempts} attempts") from None
            wait = min(2 ** (attempt - 1), 30)
            log.warning("%s: %s; retrying in %ds (attempt %d of %d)", remote.path, cause, wait, attempt + 1, attempts)
            time.sleep(wait)
    verify(remote, partial)


def _fetch_once(
    client: httpx.Client, remote: RemoteFile, partial: Path, progress: Progress, headers: dict[str, str]
) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    if have > remote.size:
        partial.unlink()
        have = 0
    if have == remote.size:
        return
    ask = {**headers, "Range": f"bytes={have}-"} if have else headers
    with client.stream("GET", remote.url, headers=ask) as response:
        if response.status_code in (401, 403):
            raise DownloadError(
                f"{remote.path}: {response.status_code}: not allowed (a gated or private model needs a token)"
            )
        if response.status_code == 404:
            raise DownloadError(f"{remote.path}: 404: not found at {remote.url}")
        if response.status_code == 200:
            if have:
                progress(-have)  # the server ignored the range: start again
            have = 0
        elif response.status_code != 206 or not response.headers.get("content-range", "").startswith(f"bytes {have}-"):
            raise DownloadIncomplete(f"unexpected answer {response.status_code} to a request from byte {have}")
        with partial.open("ab" if have else "wb") as out:
            for chunk in response.iter_raw(CHUNK):
                out.write(chunk)
                progress(len(chunk))
    if partial.stat().st_size < remote.size:
        raise DownloadIncomplete(f"the server sent {partial.stat().st_size} of {remote.size} bytes")


def verify(remote: RemoteFile, path: Path) -> None:
    """The fetched file has the listed size and digest; else it is removed and `DownloadError` raised."""
    size = path.stat().st_size
    if size != remote.size:
        path.unlink()
        raise DownloadError(f"{remote.path}: {size} bytes where the source lists {remote.size}")
    if remote.digest is None:
        return
    h = remote.digest.hasher(size)
    with path.open("rb") as f:
        while block := f.read(CHUNK * 8):
            h.update(block)
    if h.hexdigest() != remote.digest.hex:
        path.unlink()
        raise DownloadError(
            f"{remote.path}: {remote.digest.kind} mismatch: the source lists {remote.digest.hex}, the file has"
            f" {h.hexdigest()} (corrupted in transit or at the source)"
        )


def _describe(exc: Exception, client: httpx.Client) -> str:
    if isinstance(exc, httpx.ReadTimeout):
        return f"stalled: no byte for {client.timeout.read:g} s"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"cannot connect ({exc})"
    return str(exc) or type(exc).__name__
