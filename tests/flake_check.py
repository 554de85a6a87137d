"""Run a pytest selection N times in one session and print each test's failures out of N.

`make flake-check SUITE="tests/router/integration" N=10`. The selection runs whole, N times over, inside one pytest
session: session fixtures (the local control plane's operator, the real engine) start once, as in CI, and each test
runs after the same neighbours it has in CI, so a test that fails by its order shows up too. A test counts as failed
in a run when any of its phases (setup, call, teardown) failed there. The exit status is 1 when any test failed.

Each run is a parametrization of its own (as pytest-repeat does), not the same item collected again: an item carries
its function-scoped fixtures' state, so running one item twice fails its second setup.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

RUN = "flake_check_run"
"""The parameter that makes each run of a test an item of its own."""


def run_of(item: pytest.Item) -> int:
    """Which run an item belongs to; an item pytest cannot parametrize (a unittest case) runs once, in the first."""
    callspec = getattr(item, "callspec", None)
    return callspec.params[RUN] if callspec is not None and RUN in callspec.params else 1


def test_of(item: pytest.Item) -> str:
    """The test's id without the run's parameter, as CI names it."""
    run = f"run{run_of(item)}"  # pytest joins it to the test's own ids with "-", first or last
    return re.sub(rf"\[{run}\]$|(?<=\[){run}-|-{run}(?=\]$)", "", item.nodeid)


@dataclass(eq=False)  # pytest keeps its plugins in sets
class FlakeCheck:
    """A pytest plugin: runs the collected tests `runs` times and counts failures per test."""

    runs: int
    tests: dict[str, str] = field(default_factory=dict)
    started: Counter[str] = field(default_factory=Counter)
    failed: dict[str, set[int]] = field(default_factory=dict)
    run_failures: Counter[int] = field(default_factory=Counter)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        metafunc.fixturenames.append(RUN)
        metafunc.parametrize(RUN, range(1, self.runs + 1), ids=lambda run: f"run{run}")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Whole runs one after another: pytest puts a test's runs side by side."""
        self.tests = {item.nodeid: test_of(item) for item in items}
        items.sort(key=run_of)  # stable: each run keeps CI's order

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.started[self.tests[nodeid]] += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            test = self.tests[report.nodeid]
            run = self.started[test]
            if run not in self.failed.setdefault(test, set()):
                self.failed[test].add(run)
                self.run_failures[run] += 1

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        write = terminalreporter.write_line
        write("")
        write(f"flake-check: {len(self.started)} tests, {self.runs} runs")
        for line in self.table():
            write(line)

    def table(self) -> Iterator[str]:
        clean = sum(1 for run in range(1, self.runs + 1) if not self.run_failures[run])
        yield f"runs with no failure: {clean} of {self.runs}"
        if not self.failed:
            yield "every test passed every run"
            return
        yield "failures  test (runs that failed)"
        for nodeid, runs in sorted(self.failed.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            ran = self.started[nodeid]
            yield f"{len(runs):>3} of {ran:<3} {nodeid} ({', '.join(map(str, sorted(runs)))})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="how many times to run the selection")
    parser.add_argument("suite", help="the pytest selection, as one shell-quoted string (paths, -m, -k)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    check = FlakeCheck(args.runs)
    status = pytest.main(["-q", "-p", "no:cacheprovider", *shlex.split(args.suite)], plugins=[check])
    return 1 if check.failed or status != pytest.ExitCode.OK else 0


if __name__ == "__main__":
    sys.exit(main())
