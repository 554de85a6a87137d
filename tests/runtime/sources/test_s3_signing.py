"""S3's presigned URLs (SigV4 in the query string) against AWS's own worked example, and S3 URIs."""

from __future__ import annotations

import datetime as dt

import pytest

from vif.runtime.sources.fetch import DownloadError
from vif.runtime.sources.s3 import S3Source


def test_a_presigned_url_matches_awss_worked_example() -> None:
    """docs.aws.amazon.com, "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)"."""
    source = S3Source("examplebucket", "", "https://examplebucket.s3.amazonaws.com", "us-east-1",
                      "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")  # fmt: skip
    url = source.presign("https://examplebucket.s3.amazonaws.com/test.txt", dt.datetime(2013, 5, 24, tzinfo=dt.UTC),
                         expires=86400)  # fmt: skip
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z"
        "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def test_without_credentials_urls_go_unsigned() -> None:
    assert S3Source("b", "p").presign("https://s3.amazonaws.com/b/p/x") == "https://s3.amazonaws.com/b/p/x"


def test_uris_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://store.infra:9000/")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    source = S3Source.from_uri("s3://models/org/llama-8b/")
    assert (source.bucket, source.prefix, source.endpoint, source.region) == (
        "models", "org/llama-8b", "http://store.infra:9000", "eu-west-1")  # fmt: skip
    assert source.cache_dir == "s3/models/org--llama-8b"
    assert source.object_url("org/llama-8b/a b.json") == "http://store.infra:9000/models/org/llama-8b/a%20b.json"
    for bad in ("s3://", "s3://UPPER/x", "https://models/x", "s3://a/x"):
        with pytest.raises(DownloadError, match="not an S3 URI"):
            S3Source.from_uri(bad)
