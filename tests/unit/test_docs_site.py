"""The README stays a short entry point whose links resolve, and the exit-code page matches the codes the CLI uses."""

from __future__ import annotations

import re
from pathlib import Path

from cicd_tools.cli.main import BROKEN_PIPE, INTERNAL_ERROR
from cicd_tools.support.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]


def test_readme_is_at_most_250_lines() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move reference material to docs/"


def test_readme_keeps_the_two_commands_first() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "demo"], ["make", "test"]]


def test_exit_codes_page_lists_exactly_the_codes_the_cli_exits_with() -> None:
    page = (REPO / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    documented = [int(m) for m in re.findall(r"^\| (\d+) \|", page, flags=re.MULTILINE)]
    # ExitCode holds the codes errors carry; the CLI adds 70 (a bug in cicd-tools) and 141 (stdout closed early).
    used = {int(code) for code in ExitCode} | {INTERNAL_ERROR, BROKEN_PIPE}
    assert sorted(documented) == sorted(used)
    assert len(documented) == len(set(documented))


def test_readme_links_point_at_files_that_exist() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    targets = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert len(targets) > 10
    missing = [t for t in targets if t and not (REPO / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
