"""A Hugging Face Hub repository as a list of files: the Hub's own HTTP API, on `HF_ENDPOINT` as huggingface_hub
reads it (a mirror or a self-hosted hub works the same).

The revision (a branch, tag or commit) is resolved to its commit first, so the cache is keyed by what was fetched;
the tree lists every file with its size and checksum: the LFS sha256 for large files, the git blob sha1 for the
rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from vif.runtime.sources.fetch import Digest, DownloadError, RemoteFile, checked_relative

DEFAULT_ENDPOINT = "https://huggingface.co"
NOT_FOUND = {
    "RepoNotFound": "no such repository (or it is private and no token was given)",
    "RevisionNotFound": "no such revision",
    "EntryNotFound": "no such file",
}
# org/name, each starting with a letter or digit (vLLM takes an id that exists as a relative path for a folder)
REPO_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$"


@dataclass(frozen=True)
class HubSource:
    repo: str  # org/name
    revision: str = "main"
    endpoint: str = DEFAULT_ENDPOINT
    token: str | None = None

    @classmethod
    def from_environment(cls, repo: str, revision: str | None = None) -> HubSource:
        endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
        return cls(repo, revision or "main", endpoint, os.environ.get("HF_TOKEN") or None)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def cache_dir(self) -> str:
        """The cache's folder for this repository, below which each commit is a version."""
        return f"huggingface/{self.repo.replace('/', '--')}"

    def describe(self) -> str:
        return f"{self.repo}@{self.revision} on {self.endpoint}"

    def list_files(self, client: httpx.Client) -> tuple[str, list[RemoteFile]]:
        return list_files(client, self)


def list_files(client: httpx.Client, source: HubSource) -> tuple[str, list[RemoteFile]]:
    """The revision's commit and its files."""
    api = f"{source.endpoint}/api/models/{source.repo}"
    commit = _get_json(client, f"{api}/revision/{quote(source.revision, safe='')}", source)["sha"]
    tree = _get_json(client, f"{api}/tree/{commit}/?recursive=true", source)
    files = []
    for entry in tree:
        if entry.get("type") != "file":
            continue
        path = checked_relative(entry["path"])
        lfs = entry.get("lfs")
        digest = Digest("sha256", lfs["oid"]) if lfs else Digest("git-blob-sha1", entry["oid"])
        url = f"{source.endpoint}/{source.repo}/resolve/{commit}/{quote(path)}"
        files.append(RemoteFile(path, int(lfs["size"] if lfs else entry["size"]), url, digest))
    if not files:
        raise DownloadError(f"{source.describe()}: the revision holds no files")
    return commit, files


def _get_json(client: httpx.Client, url: str, source: HubSource) -> Any:
    try:
        response = client.get(url, headers=source.headers)
    except httpx.TransportError as exc:
        raise DownloadError(f"{source.describe()}: cannot reach the hub ({type(exc).__name__}: {exc})") from None
    # The Hub says what went wrong in X-Error-Code, as huggingface_hub reads it: a missing repository is a 401
    # to a client without a token (so private names do not leak), a gated one a 403 or a 401.
    code = response.headers.get("x-error-code", "")
    if code in NOT_FOUND or response.status_code == 404:
        what = NOT_FOUND.get(code, "no such repository or revision")
        raise DownloadError(f"{source.describe()}: {response.status_code}: {what}")
    if response.status_code in (401, 403):
        why = "no token given (HF_TOKEN)" if source.token is None else "the token is not allowed"
        raise DownloadError(f"{source.describe()}: {response.status_code}: gated or private, {why}")
    if response.status_code != 200:
        raise DownloadError(f"{source.describe()}: the hub answered {response.status_code}")
    return response.json()
