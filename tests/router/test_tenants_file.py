"""The tenants file (`shared/tenants.py`): named keys, their limits, and the errors a wrong file gets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from vif.runtime.shared.api_keys import KeyCheck
from vif.runtime.shared.tenants import Limits, read_tenants, watched_files


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "tenants.json"
    path.write_bytes(orjson.dumps(document))
    return path


def test_keys_belong_to_their_tenants_and_limits_fall_back_to_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/search").write_text("sk-search\n")
    path = write(tmp_path, {
        "defaults": {"requestsPerMinute": 600, "concurrentRequests": 8},
        "tenants": [
            {"name": "search", "keyFile": "keys/search", "tokensPerMinute": 1000},
            {"name": "batch", "keySha256": hashlib.sha256(b"sk-batch").hexdigest(), "requestsPerMinute": 5},
        ],
    })  # fmt: skip
    table = read_tenants(path, plain_keys=("sk-plain",))
    keys = KeyCheck(owners=table.owners)
    assert keys.owner(b"Bearer sk-search") == "search"
    assert keys.owner(b"Bearer sk-batch") == "batch"
    assert keys.owner(b"Bearer sk-plain") == "default"
    assert keys.owner(b"Bearer sk-other") is None and keys.owner(b"Basic sk-search") is None
    assert table.limits == {
        "default": Limits(600, None, 8),
        "search": Limits(600, 1000, 8),
        "batch": Limits(5, None, 8),
    }
    assert watched_files(path) == [path, tmp_path / "keys/search"]


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"tenants": [{"name": "Search", "keySha256": "0" * 64}]}, "DNS label"),
        ({"tenants": [{"name": "a", "keySha256": "0" * 64, "rpm": 3}]}, "unknown field(s) rpm"),
        ({"tenants": [{"name": "a"}]}, "exactly one of keyFile and keySha256"),
        ({"tenants": [{"name": "a", "keySha256": "abc"}]}, "64 lower-case hex digits"),
        ({"tenants": [{"name": "a", "keySha256": "0" * 64, "requestsPerMinute": 0}]}, "at least 1"),
        ({"tenants": [{"name": "a", "keySha256": "0" * 64}, {"name": "a", "keySha256": "1" * 64}]}, "named twice"),
        ({"tenants": [{"name": "a", "keySha256": "0" * 64}, {"name": "b", "keySha256": "0" * 64}]}, "has the key"),
        ({"defaults": {"tokensPerHour": 3}}, "unknown limit 'tokensPerHour'"),
        ({"tenant": []}, '"defaults" and "tenants" and nothing else'),
        ({"tenants": []}, "holds no key"),  # a file meant to guard the model must not open it
    ],
)
def test_a_wrong_file_is_refused_with_where_and_why(tmp_path: Path, document: object, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        read_tenants(write(tmp_path, document))


def test_a_missing_key_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        read_tenants(write(tmp_path, {"tenants": [{"name": "a", "keyFile": "keys/a"}]}))
