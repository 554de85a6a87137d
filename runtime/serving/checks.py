"""Checks every route that reads a body shares: the body is JSON, and token ids name tokens of the vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from vif.runtime.protocols.errors import APIError


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise APIError("The request body is not valid JSON.", code="invalid_json") from None


def check_token_ids(token_ids: Sequence[int], vocab_size: int, param: str) -> None:
    """Token ids must name tokens of the vocabulary: checked before anything decodes or echoes them."""
    bad = next((t for t in token_ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise APIError(
            f"Token id {bad} is out of the vocabulary (ids are 0 to {vocab_size - 1}).",
            param=param,
            code="invalid_token",
        )
