"""docs/quickstart.md and the script that runs it (`make quickstart-kind`) say the same: every command on the page,
in the page's order, is a line of the script. The script itself needs Docker and kind, which CI has not; the same
install, apply and first answer run on the local plane in e2e/test_e2e.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs/quickstart.md"
SCRIPT = REPO / "e2e/quickstart-kind.sh"


def page_commands() -> list[str]:
    """The lines of the page's bash blocks before its clean-up section (which the script leaves to the user)."""
    steps = PAGE.read_text().split("## Cleaning up")[0]
    blocks = re.findall(r"```bash\n(.*?)```", steps, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_page_runs_as_the_script_does() -> None:
    commands = page_commands()
    assert len(commands) >= 10, "the page lost its steps"
    script = [line for line in SCRIPT.read_text().splitlines() if line.strip()]
    position = 0
    for command in commands:
        assert command in script[position:], f"docs/quickstart.md runs {command!r}, which the script does not (there)"
        position = script.index(command, position) + 1


def test_the_script_is_valid_bash_and_make_runs_it() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    assert "e2e/quickstart-kind.sh" in (REPO / "Makefile").read_text()
