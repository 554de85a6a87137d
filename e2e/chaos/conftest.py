"""`make chaos`: faults on the local plane, each a test that records a row of one table, printed at the end.

The files here are named `chaos_*.py`, so `make test` does not collect them: `make chaos` names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.cluster import fresh_namespace, with_crds

HEADER = ("fault", "sent", "failed", "failed before streaming", "recovered in", "left behind")


@dataclass(frozen=True)
class Row:
    """One fault's outcome. Counts are None for a fault no client load ran through."""

    fault: str
    recovered_s: float
    left_behind: str
    sent: int | None = None
    failed: int | None = None
    failed_before_streaming: int | None = None

    def cells(self) -> tuple[str, ...]:
        counts = (self.sent, self.failed, self.failed_before_streaming)
        shown = tuple("-" if n is None else str(n) for n in counts)
        return (self.fault, *shown, f"{self.recovered_s:.1f} s", self.left_behind)


ROWS: list[Row] = []


@pytest.fixture
def table() -> list[Row]:
    return ROWS


@pytest.fixture(scope="session")
def cluster() -> Path:
    return with_crds()


@pytest.fixture
def namespace(cluster: Path) -> Iterator[str]:
    with fresh_namespace("vif-chaos") as name:
        yield name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    write = terminalreporter.write_line
    write("")
    write("| " + " | ".join(HEADER) + " |")
    write("|" + " --- |" * len(HEADER))
    for row in ROWS:
        write("| " + " | ".join(row.cells()) + " |")
