"""An S3 prefix (`s3://bucket/prefix`) as a list of files, on AWS or any S3-compatible store, with the standard
environment: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`), `AWS_REGION` (or `AWS_DEFAULT_REGION`),
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.

The listing is ListObjectsV2; each file is fetched through a presigned GET URL (Signature Version 4 in the query
string), so the downloader sends no credentials of its own and ranged requests resume as they do from the Hub. An
ETag without a `-` is the object's MD5 and is verified; a multipart upload's ETag is not a digest, so those files
are checked by size only. S3 has no commit: the cache keys a prefix by a hash of its listing (keys, sizes and
ETags), so a changed object is a new folder and never mixes with the old one.

No SDK: SigV4 is ~40 lines of hmac, and boto3 would add a large dependency to the runtime image for two calls.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpx

from vif.runtime.sources.fetch import Digest, DownloadError, RemoteFile, checked_relative

S3_URI = r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?$"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's longest: a slow download's last file still has a valid URL
MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
LISTING_ERRORS = {
    "NoSuchBucket": "no such bucket",
    "AccessDenied": "access denied (the credentials may not list it)",
    "InvalidAccessKeyId": "unknown access key",
    "SignatureDoesNotMatch": "the secret key is wrong",
}


@dataclass(frozen=True)
class S3Source:
    bucket: str
    prefix: str  # without a leading or trailing /; "" for the whole bucket
    endpoint: str = "https://s3.amazonaws.com"
    region: str = "us-east-1"
    access_key: str = ""
    secret_key: str = ""
    session_token: str = ""

    @classmethod
    def from_uri(cls, uri: str) -> S3Source:
        """`uri` with the environment's endpoint, region and credentials."""
        found = re.fullmatch(S3_URI, uri)
        if found is None:
            raise DownloadError(f"{uri}: not an S3 URI (s3://bucket/prefix)")
        env = os.environ
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or f"https://s3.{region}.amazonaws.com"
        return cls(found[1], (found[2] or "").strip("/"), endpoint.rstrip("/"), region,
                   env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", ""),
                   env.get("AWS_SESSION_TOKEN", ""))  # fmt: skip

    @property
    def headers(self) -> dict[str, str]:
        return {}  # every URL carries its own signature

    @property
    def cache_dir(self) -> str:
        """The cache's folder for this prefix, below which each listing's hash is a version."""
        return f"s3/{self.bucket}/{self.prefix.replace('/', '--') or '-'}"

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} on {self.endpoint}"

    def list_files(self, client: httpx.Client) -> tuple[str, list[RemoteFile]]:
        return list_files(client, self)

    def object_url(self, key: str) -> str:
        """Path-style (works on every S3-compatible store; virtual hosts need DNS for each bucket)."""
        return f"{self.endpoint}/{self.bucket}/{quote(key, safe='/~')}"

    def presign(self, url: str, now: dt.datetime | None = None, expires: int = PRESIGN_SECONDS) -> str:
        """`url` (a GET) with a SigV4 query-string signature; unchanged when there are no credentials."""
        if not self.access_key:
            return url
        now = now or dt.datetime.now(dt.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        scope = f"{day}/{self.region}/s3/aws4_request"
        parts = urlsplit(url)
        query = dict(q.split("=", 1) for q in parts.query.split("&") if q)
        query |= {"X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                  "X-Amz-Credential": quote(f"{self.access_key}/{scope}", safe=""),
                  "X-Amz-Date": stamp, "X-Amz-Expires": str(expires), "X-Amz-SignedHeaders": "host"}  # fmt: skip
        if self.session_token:
            query["X-Amz-Security-Token"] = quote(self.session_token, safe="")
        canonical_query = "&".join(f"{k}={query[k]}" for k in sorted(query))
        request = "\n".join(["GET", parts.path or "/", canonical_query, f"host:{parts.netloc}\n", "host",
                             "UNSIGNED-PAYLOAD"])  # fmt: skip
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{parts.scheme}://{parts.netloc}{parts.path}?{canonical_query}&X-Amz-Signature={signature}"


def list_files(client: httpx.Client, source: S3Source) -> tuple[str, list[RemoteFile]]:
    """The listing's hash (the cache's version) and the prefix's files, every page of them."""
    prefix = f"{source.prefix}/" if source.prefix else ""
    files: list[RemoteFile] = []
    listed: list[str] = []  # key, size and ETag of each: the listing the version is a hash of
    token = ""
    while True:
        query = f"list-type=2&prefix={quote(prefix, safe='')}" + (
            f"&continuation-token={quote(token, safe='')}" if token else ""
        )
        root = _get_xml(client, source, f"{source.endpoint}/{source.bucket}?{query}")
        for item in root.iter(f"{NS}Contents"):
            key, size = item.findtext(f"{NS}Key", ""), int(item.findtext(f"{NS}Size", "0"))
            if key.endswith("/"):
                continue  # a "folder" marker some tools write
            etag = item.findtext(f"{NS}ETag", "").strip('"').lower()
            digest = Digest("md5", etag) if MD5_ETAG.match(etag) else None
            url = source.presign(source.object_url(key))
            files.append(RemoteFile(checked_relative(key[len(prefix) :]), size, url, digest))
            listed.append(f"{key}\t{size}\t{etag}")
        token = root.findtext(f"{NS}NextContinuationToken", "")
        if root.findtext(f"{NS}IsTruncated", "false") != "true" or not token:
            break
    if not files:
        raise DownloadError(f"{source.describe()}: no objects under that prefix")
    return hashlib.sha256("\n".join(sorted(listed)).encode()).hexdigest()[:16], files


def _get_xml(client: httpx.Client, source: S3Source, url: str) -> ET.Element:
    try:
        response = client.get(source.presign(url))
    except httpx.TransportError as exc:
        raise DownloadError(f"{source.describe()}: cannot reach the store ({type(exc).__name__}: {exc})") from None
    if response.status_code != 200:
        code = re.search(r"<Code>([^<]+)</Code>", response.text)
        what = LISTING_ERRORS.get(code[1], code[1]) if code else "the store refused the listing"
        raise DownloadError(f"{source.describe()}: {response.status_code}: {what}")
    return ET.fromstring(response.content)
