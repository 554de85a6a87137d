"""Tenants: named API keys, each with its own limits (docs/tenants.md).

A tenants file, as the operator writes it from `spec.tenants` (or as a user writes it for `vif-router
--tenants-file`), is JSON with the CRD's own field names:

    {"defaults": {"requestsPerMinute": 600},
     "tenants": [{"name": "search", "keyFile": "keys/search", "tokensPerMinute": 200000},
                 {"name": "batch", "keySha256": "9f86d0...", "concurrentRequests": 4}]}

A key is given as a file (`keyFile`, relative to the tenants file: a mounted Secret's key) or as the hex SHA-256 of
the key (`keySha256`), so that a key need never be written down in clear. A limit a tenant leaves out comes from
`defaults`; a limit left out of both does not apply. The runtime reads the same file for the keys alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

TENANT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS label: it is a metrics label and a log field
DEFAULT_TENANT = "default"  # the owner of the keys that come without a name (--api-key, --api-keys-file)
LIMIT_FIELDS = {"requestsPerMinute": "requests_per_minute", "tokensPerMinute": "tokens_per_minute",
                "concurrentRequests": "concurrent_requests"}  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """None: that limit does not apply."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None  # prompt and completion tokens, charged as the engine produces them
    concurrent_requests: int | None = None

    def over(self, defaults: Limits) -> Limits:
        """These limits, with `defaults` where these set none."""
        return Limits(**{f.name: getattr(self, f.name) or getattr(defaults, f.name) for f in fields(self)})

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


@dataclass(frozen=True)
class TenantTable:
    """Key digests to tenant names, and each tenant's limits (defaults applied)."""

    owners: dict[bytes, str] = field(default_factory=dict)
    limits: dict[str, Limits] = field(default_factory=dict)


def digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def read_tenants(path: Path, plain_keys: tuple[str, ...] = ()) -> TenantTable:
    """The table a tenants file describes; `plain_keys` (keys without a name) belong to the tenant `default` under
    the defaults. ValueError: the file is not a valid tenants file (the message says where); OSError: a file is
    missing."""
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(document, dict) or set(document) - {"defaults", "tenants"}:
        raise ValueError(f'{path}: an object with "defaults" and "tenants" and nothing else')
    defaults = _limits(document.get("defaults") or {}, f"{path}: defaults")
    table = TenantTable()
    if plain_keys:
        _add(table, DEFAULT_TENANT, [digest(k) for k in plain_keys], defaults, f"{path}")
    for i, entry in enumerate(document.get("tenants") or []):
        where = f"{path}: tenants[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: an object")
        unknown = set(entry) - {"name", "keyFile", "keySha256", *LIMIT_FIELDS}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        name = entry.get("name")
        if not isinstance(name, str) or not TENANT_NAME.match(name):
            raise ValueError(f"{where}: name must be a DNS label (lower-case letters, digits, '-')")
        limits = _limits({k: v for k, v in entry.items() if k in LIMIT_FIELDS}, where).over(defaults)
        _add(table, name, [_key_digest(entry, path.parent, where)], limits, where)
    if not table.owners:
        raise ValueError(f"{path} holds no key: a tenant each, or keys without a name beside it")
    return table


def _add(table: TenantTable, name: str, digests: list[bytes], limits: Limits, where: str) -> None:
    if name in table.limits:
        raise ValueError(f"{where}: tenant {name!r} is named twice")
    for d in digests:
        if d in table.owners:
            raise ValueError(f"{where}: tenant {name!r} has the key of tenant {table.owners[d]!r}")
        table.owners[d] = name
    table.limits[name] = limits


def _key_digest(entry: Mapping[str, Any], base: Path, where: str) -> bytes:
    if ("keyFile" in entry) == ("keySha256" in entry):
        raise ValueError(f"{where}: exactly one of keyFile and keySha256")
    if "keySha256" in entry:
        hexdigest = entry["keySha256"]
        if not isinstance(hexdigest, str) or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
            raise ValueError(f"{where}: keySha256 is 64 lower-case hex digits")
        return bytes.fromhex(hexdigest)
    try:
        key = (base / str(entry["keyFile"])).read_text().strip()
    except UnicodeDecodeError:  # its message would quote the file's bytes
        raise ValueError(f"{where}: keyFile {entry['keyFile']} is not UTF-8 text") from None
    if not key:
        raise ValueError(f"{where}: keyFile {entry['keyFile']} is empty")
    return digest(key)


def _limits(given: Any, where: str) -> Limits:
    if not isinstance(given, dict):
        raise ValueError(f"{where}: an object")
    values = {}
    for name, value in given.items():
        if name not in LIMIT_FIELDS:
            raise ValueError(f"{where}: unknown limit {name!r} (one of {', '.join(LIMIT_FIELDS)})")
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: {name} is a whole number of at least 1")
        values[LIMIT_FIELDS[name]] = value
    return Limits(**values)


def watched_files(path: Path) -> list[Path]:
    """The tenants file and the key files it names now, for a watch that reads them again when one changes (a
    file that cannot be read names none: reading it again is what reports why)."""
    try:
        entries = orjson.loads(path.read_bytes()).get("tenants") or []
        return [path, *(path.parent / str(e["keyFile"]) for e in entries if isinstance(e, dict) and "keyFile" in e)]
    except (OSError, orjson.JSONDecodeError, AttributeError, TypeError):
        return [path]
