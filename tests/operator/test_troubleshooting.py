"""docs/troubleshooting.md lists every reason the operator writes, so a user who meets one finds what to do."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from vif.operator.reasons import Reason

PAGE = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


def test_every_reason_has_a_row() -> None:
    rows = set(re.findall(r"^\| `([A-Za-z]+)` \|", PAGE.read_text(), re.M))
    assert rows == {reason.value for reason in Reason}


def test_the_operator_writes_reasons_only_from_the_list() -> None:
    """No reason written as a literal beside the list: `condition(type, ok, REASON, ...)`,
    `failure_outcome(body, REASON, ...)` and `kopf.event/warn(..., reason=REASON)` all take a `Reason`."""
    positions = {"condition": 2, "failure_outcome": 1}
    literals = []
    for path in sorted((PAGE.parents[1] / "operator").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            given = [kw.value for kw in node.keywords if kw.arg == "reason"]
            if name in positions and len(node.args) > positions[name]:
                given.append(node.args[positions[name]])
            literals += [f"{path.name}:{node.lineno}" for arg in given if isinstance(arg, ast.Constant)]
    assert literals == []
