"""Marking a folder's tests by what they need, from its conftest: `pytest -m` then selects them."""

from __future__ import annotations

from pathlib import Path

import pytest


def mark_folder(conftest: str, items: list[pytest.Item], marker: pytest.MarkDecorator) -> None:
    """Add `marker` to every collected test under the folder of `conftest` (pass its `__file__`)."""
    here = Path(conftest).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(marker)
