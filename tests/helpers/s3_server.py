"""A real S3-compatible server for the tests: moto's standalone server (PyPI), in its own venv under
~/.cache/vif/tools (`make test-servers`). Objects are uploaded with boto3 from that venv, as a user would upload a
model; vif's downloader then reaches it with `AWS_ENDPOINT_URL=<url>`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.processes import answers, free_port, stop_group
from helpers.waits import wait_for

MOTO_VERSION = "5.2.5"
MOTO = Path(os.environ.get("VIF_TOOLS", Path.home() / ".cache/vif/tools")) / f"moto-{MOTO_VERSION}"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "vif-test", "AWS_SECRET_ACCESS_KEY": "vif-test-secret", "AWS_REGION": "us-east-1"}
UPLOAD = """
import json, sys
import boto3
url, bucket, prefix, files = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=url)
if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket=bucket)
for name, path in files.items():
    s3.upload_file(path, bucket, f"{prefix}/{name}")
"""


@dataclass
class S3Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    marks: dict[str, int] = field(default_factory=dict)  # bucket/prefix -> the log's size when it was uploaded

    @property
    def env(self) -> dict[str, str]:
        """What a client needs: the endpoint and the credentials (moto takes any)."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.url}

    def upload(self, bucket: str, prefix: str, files: dict[str, Path]) -> None:
        """`files` (name -> file) under `s3://bucket/prefix/`, with boto3 (multipart above 8 MiB, as boto3 does)."""
        cmd = [str(MOTO / "bin/python"), "-c", UPLOAD, self.url, bucket, prefix,
               json.dumps({name: str(path) for name, path in files.items()})]  # fmt: skip
        subprocess.run(cmd, env={**os.environ, **self.env}, check=True, capture_output=True, timeout=300)
        self.marks[f"{bucket}/{prefix}"] = self.log.stat().st_size

    def object_requests(self, bucket: str, prefix: str) -> list[str]:
        """The object downloads under the prefix since it was uploaded, in the server's own access log."""
        pattern = re.compile(rf'"GET /{re.escape(bucket)}/{re.escape(prefix)}/[^ ?]+\?[^ ]* HTTP/1.1" 20[06]')
        with self.log.open("rb") as f:
            f.seek(self.marks.get(f"{bucket}/{prefix}", 0))
            lines = f.read().decode(errors="replace").splitlines()
        return [line for line in lines if pattern.search(line)]


@contextlib.contextmanager
def running_s3(workdir: Path) -> Iterator[S3Server]:
    """moto_server on a free port; fails with its log if it does not answer in time."""
    if not (MOTO / "bin/moto_server").exists():
        raise RuntimeError(f"{MOTO} is missing: run `make test-servers`")
    port = free_port()
    log = workdir / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(MOTO / "bin/moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    server = S3Server(url, proc, log)
    try:
        with contextlib.suppress(AssertionError):
            wait_for(lambda: proc.poll() is not None or answers(url), "moto answering", timeout=60, every=0.2)
        if proc.poll() is not None or not answers(url):
            pytest.fail(f"moto did not answer on {url}:\n{log.read_text(errors='replace')[-3000:]}")
        yield server
    finally:
        stop_group(proc, grace=10)
