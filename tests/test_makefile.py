"""`make help` names every target a developer may run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_make_help_names_every_phony_target() -> None:
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    phony = {name for line in re.findall(r"^\.PHONY:(.*)$", text, re.M) for name in line.split()}
    shown = set(re.findall(r"[\w-]+", subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True,
                                                      text=True, check=True).stdout))  # fmt: skip
    assert len(phony) > 30 and not phony - shown - {"help"}, sorted(phony - shown)
