"""API keys, shared by the runtime and the router: where they come from, and checking a request's header."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from vif.runtime.shared.tenants import DEFAULT_TENANT, digest

# What a request body may be, on the runtime and on the router in front of it (one limit for both, so the router
# never holds a body the runtime would refuse).
MAX_BODY_BYTES = 4 << 20


def load_api_keys(
    given: Sequence[str], keys_file: Path | None, environ: Mapping[str, str] = os.environ
) -> tuple[str, ...]:
    """Every configured key: `--api-key` values, `VIF_API_KEYS` (comma-separated) and a file of a key a line (or
    comma-separated: the model's Secret, as the operator mounts it). A source that is configured but yields no key
    is an error (LookupError): silently serving without auth because a Secret's key was blank would be worse than
    not starting."""
    keys: list[str] = []
    for key in given:
        if not key.strip():
            raise LookupError("--api-key was given an empty key")
        keys.append(key.strip())
    if "VIF_API_KEYS" in environ:
        listed = [k.strip() for k in environ["VIF_API_KEYS"].split(",") if k.strip()]
        if not listed:
            raise LookupError("VIF_API_KEYS is set but holds no key")
        keys += listed
    if keys_file is not None:
        text = keys_file.read_text().replace(",", "\n")  # a Secret's value, as $VIF_API_KEYS takes it, fits too
        from_file = [line.strip() for line in text.splitlines() if line.strip()]
        if not from_file:
            raise LookupError(f"--api-keys-file {keys_file} holds no key")
        keys += from_file
    return tuple(keys)


class KeyCheck:
    """`Authorization: Bearer KEY` against several keys in constant time; no keys means every request passes.
    Each key has an owner: the tenant it belongs to (`tenants.py`), `default` for a key given without a name."""

    def __init__(self, keys: Sequence[str] = (), owners: Mapping[bytes, str] | None = None) -> None:
        # Digests: compare_digest on inputs of different lengths would tell the key's length.
        self.owners = {digest(k): DEFAULT_TENANT for k in keys if k} | dict(owners or {})

    def owner(self, authorization: bytes | None) -> str | None:
        """The name of the tenant whose key the header carries; None for no key, or one that is not known."""
        scheme, _, presented = (authorization or b"").partition(b" ")
        presented_digest = digest(presented.strip())
        found = None
        # Compare against every key so the time taken does not tell which key (or how much of it) matched.
        for key, name in self.owners.items():
            if hmac.compare_digest(presented_digest, key):
                found = name
        return found if scheme.lower() == b"bearer" else None

    def accepts(self, authorization: bytes | None) -> bool:
        return not self.owners or self.owner(authorization) is not None
