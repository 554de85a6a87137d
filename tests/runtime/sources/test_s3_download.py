"""vif's downloader against a real S3-compatible store (moto): a prefix fetched whole and verified, once, and the
failures named; `vif-runtime fetch s3://...` as a model's init container runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.hub_server import file_sha256, model_files
from helpers.s3_server import S3Server
from vif.runtime.sources.cache import COMPLETE, ensure_model
from vif.runtime.sources.fetch import DownloadError
from vif.runtime.sources.s3 import S3Source


def source(store: S3Server, uri: str, **changes: str) -> S3Source:
    base = S3Source.from_uri(uri)
    return S3Source(base.bucket, base.prefix, store.url, "us-east-1", "vif-test", "vif-test-secret", **changes)


def test_a_prefix_is_fetched_whole_and_verified_once(store: S3Server, tmp_path: Path) -> None:
    files = model_files()
    store.upload("models", "smollm2/v1", files)
    folder = ensure_model(source(store, "s3://models/smollm2/v1"), tmp_path)
    assert folder.parent == tmp_path / "s3" / "models" / "smollm2--v1"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, COMPLETE])
    assert {name: file_sha256(folder / name) for name in files} == {n: file_sha256(p) for n, p in files.items()}
    assert len(store.object_requests("models", "smollm2/v1")) == len(files)

    assert ensure_model(source(store, "s3://models/smollm2/v1"), tmp_path) == folder  # a second model of it
    assert len(store.object_requests("models", "smollm2/v1")) == len(files)  # nothing fetched again


def test_a_changed_object_is_a_new_version_not_a_mix(store: S3Server, tmp_path: Path) -> None:
    files = model_files()
    small = {name: path for name, path in files.items() if name.endswith(".json")}
    store.upload("models", "changing", small)
    first = ensure_model(source(store, "s3://models/changing"), tmp_path)
    store.upload("models", "changing", {"config.json": files["generation_config.json"]})
    second = ensure_model(source(store, "s3://models/changing"), tmp_path)
    assert first != second and (first / COMPLETE).exists() and (second / COMPLETE).exists()
    assert file_sha256(second / "config.json") == file_sha256(files["generation_config.json"])


@pytest.mark.parametrize(
    ("uri", "message"),
    [("s3://absent-bucket/x", "404: no such bucket"), ("s3://models/no/such/prefix", "no objects under that prefix")],
)
def test_a_missing_bucket_or_prefix_is_named(store: S3Server, tmp_path: Path, uri: str, message: str) -> None:
    store.upload("models", "present", {"config.json": model_files()["config.json"]})
    with pytest.raises(DownloadError, match=message) as raised:
        ensure_model(source(store, uri), tmp_path)
    assert f"{uri} on {store.url}" in str(raised.value)


def test_fetch_takes_an_s3_uri_from_the_environment(store: S3Server, tmp_path: Path) -> None:
    files = model_files()
    store.upload("models", "fetched", files)
    cmd = [str(Path(sys.executable).parent / "vif-runtime"), "fetch", "s3://models/fetched", "--cache", str(tmp_path)]
    run = subprocess.run(cmd, env={**os.environ, **store.env}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    folder = Path(run.stdout.strip())
    assert folder.parent == tmp_path / "s3" / "models" / "fetched" and (folder / COMPLETE).exists()
    assert "(100 %)" in run.stderr
