"""vif's downloader against a real Hugging Face-compatible hub: what reaches the cache is complete and verified,
a model is fetched once, and each failure is one clear error with nothing half-done left to serve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from helpers.hub_server import HubServer, file_sha256, model_files
from helpers.processes import free_port
from helpers.waits import wait_for
from vif.runtime.sources.cache import COMPLETE, ensure_model
from vif.runtime.sources.fetch import DownloadError
from vif.runtime.sources.huggingface import HubSource


def source(hub: HubServer, repo: str, revision: str = "main") -> HubSource:
    return HubSource(repo, revision, hub.url)


def test_a_model_is_fetched_whole_and_verified_once(hub: HubServer, tmp_path: Path) -> None:
    files = model_files()
    commit = hub.add_repo("vif-test/once", files)
    folder = ensure_model(source(hub, "vif-test/once"), tmp_path)
    assert folder == tmp_path / "huggingface" / "vif-test--once" / commit
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, COMPLETE])
    assert {name: file_sha256(folder / name) for name in files} == {n: file_sha256(p) for n, p in files.items()}
    assert len(hub.file_requests("vif-test/once")) == len(files)

    again = ensure_model(source(hub, "vif-test/once"), tmp_path)  # a second model of the same source
    assert again == folder
    assert len(hub.file_requests("vif-test/once")) == len(files)  # nothing fetched again


def test_a_corrupted_file_is_refused_and_nothing_is_published(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("vif-test/corrupt", model_files(), corrupt=frozenset({"model.safetensors"}))
    with pytest.raises(
        DownloadError, match=r"model\.safetensors: sha256 mismatch: the source lists [0-9a-f]{64}"
    ) as raised:
        ensure_model(source(hub, "vif-test/corrupt"), tmp_path)
    assert str(raised.value).startswith(f"vif-test/corrupt@main on {hub.url}: ")  # the model, for its status
    cached = list((tmp_path / "huggingface" / "vif-test--corrupt").iterdir())
    assert not any((p / COMPLETE).exists() for p in cached if p.is_dir())
    assert not list(tmp_path.rglob("model.safetensors*"))  # the bad bytes are gone, not left to resume from


@pytest.mark.parametrize(
    ("repo", "revision", "message"),
    [
        ("vif-test/missing", "main", "401: no such repository"),
        ("vif-test/revisions", "v9", "no such re"),  # olah's mirror says repository, the Hub says revision
    ],
)
def test_a_missing_repository_or_revision_is_named(
    hub: HubServer, tmp_path: Path, repo: str, revision: str, message: str
) -> None:
    hub.add_repo("vif-test/revisions", {"config.json": model_files()["config.json"]})
    with pytest.raises(DownloadError, match=message) as raised:
        ensure_model(source(hub, repo, revision), tmp_path)
    assert f"{repo}@{revision} on {hub.url}" in str(raised.value)


def test_a_stalled_hub_fails_in_bounded_time_and_the_next_try_completes(hub: HubServer, tmp_path: Path) -> None:
    files = model_files()
    hub.add_repo("vif-test/stall", files)
    errors: list[BaseException] = []

    def download() -> None:
        try:
            ensure_model(source(hub, "vif-test/stall"), tmp_path, stall_timeout=2, attempts=2)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=download)
    worker.start()
    partial = lambda: next(tmp_path.rglob("model.safetensors.part"), None)  # noqa: E731
    try:
        wait_for(
            lambda: (p := partial()) is not None and p.stat().st_size > 0, "the weights half-downloaded", 120, 0.01
        )
        os.kill(hub.proc.pid, signal.SIGSTOP)
        worker.join(timeout=60)  # 2 attempts x 2 s of silence, 1 s between them
        assert not worker.is_alive(), "the download hung on a stalled hub"
    finally:
        os.kill(hub.proc.pid, signal.SIGCONT)
    assert len(errors) == 1 and isinstance(errors[0], DownloadError)
    assert (
        str(errors[0])
        == f"vif-test/stall@main on {hub.url}: model.safetensors: stalled: no byte for 2 s, after 2 attempts"
    )
    assert not list(tmp_path.rglob(COMPLETE))

    folder = ensure_model(source(hub, "vif-test/stall"), tmp_path)  # from where it stopped
    assert file_sha256(folder / "model.safetensors") == file_sha256(files["model.safetensors"])


def fetch(hub: HubServer, *args: str) -> subprocess.CompletedProcess[str]:
    """`vif-runtime fetch`, as a model's init container runs it."""
    cmd = [str(Path(sys.executable).parent / "vif-runtime"), "fetch", *args]
    return subprocess.run(cmd, env={**os.environ, "HF_ENDPOINT": hub.url}, capture_output=True, text=True, timeout=300)


def test_fetch_downloads_once_links_the_folder_and_logs_its_progress(hub: HubServer, tmp_path: Path) -> None:
    files = model_files()
    commit = hub.add_repo("vif-test/fetched", files)
    cache, link = tmp_path / "cache", tmp_path / "cache" / "revisions" / "main"
    runs = [fetch(hub, "vif-test/fetched", "--cache", str(cache), "--link", str(link)) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr[-2000:]
    folder = cache / "huggingface" / "vif-test--fetched" / commit
    assert [r.stdout.strip() for r in runs] == [str(folder)] * 2
    assert link.resolve() == folder and not os.path.isabs(os.readlink(link))  # the same on any mount path
    assert "(100 %)" in runs[0].stderr and "MB/s" in runs[0].stderr, runs[0].stderr[-2000:]
    assert "in the cache" in runs[1].stderr
    assert len(hub.file_requests("vif-test/fetched")) == len(files)  # the second run fetched nothing

    missing = fetch(hub, "vif-test/absent", "--cache", str(cache))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("vif-runtime fetch: vif-test/absent")


def test_fetch_reports_its_progress_and_holds_its_failure(hub: HubServer, tmp_path: Path) -> None:
    """What the operator reads from a download's pod: bytes while they flow, then the stall that ended it."""
    files = model_files()
    hub.add_repo("vif-test/progress", files)
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "vif-runtime"), "fetch", "vif-test/progress", "--cache", str(tmp_path),
           "--stall-timeout", "1", "--progress-host", "127.0.0.1", "--progress-port", str(port),
           "--hold-failure", "120"]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_ENDPOINT": hub.url}, stderr=subprocess.PIPE, text=True)
    seen: list[dict] = []

    def progress() -> dict | None:
        try:
            seen.append(httpx.get(f"http://127.0.0.1:{port}/progress", timeout=2).json())
        except httpx.TransportError:
            return None
        return seen[-1]

    partial = lambda: next(tmp_path.rglob("model.safetensors.part"), None)  # noqa: E731
    try:
        wait_for(
            lambda: (p := partial()) is not None and p.stat().st_size > 0, "the weights half-downloaded", 120, 0.01
        )
        os.kill(hub.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: (s := progress()) is not None and s["phase"] == "Failed", "the stall reported", 60)
        finally:
            os.kill(hub.proc.pid, signal.SIGCONT)
        downloading = [s for s in seen if s["phase"] == "Downloading"]
        assert downloading, seen  # asked while the hub was stopped, before the stall timed out
        total = sum(p.stat().st_size for p in files.values())
        assert {s["bytesTotal"] for s in seen} == {total}
        assert 0 < downloading[-1]["bytesDone"] < total
        stalled = "model.safetensors: stalled: no byte for 1 s, after 5 attempts"
        assert seen[-1]["message"] == f"vif-test/progress@main on {hub.url}: {stalled}"
        assert proc.poll() is None  # still answering with its failure (--hold-failure)
    finally:
        proc.kill()
        proc.wait()
