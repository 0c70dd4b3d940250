"""Every `cicd-tools ...` example in the README and the CI pipelines parses with the real CLI parser."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cicd_tools.cli.main import COMMAND_MODULES, build_parser

REPO = Path(__file__).resolve().parents[2]
COMMANDS = "|".join(m.rsplit(".", 1)[1] for m in COMMAND_MODULES)
DOCS = [REPO / "README.md", REPO / "action.yml", *sorted((REPO / "pipelines").rglob("*.yml"))]


def command_lines(path: Path) -> list[str]:
    """Commands as a shell would see them: continuation lines joined, comments dropped."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        match = re.search(rf"(?:^|[\s(\"'`$])cicd-tools\s+(--\w[-\w]*|{COMMANDS})\b", line)
        if not match or "`cicd-tools" in line or "eval " in line:
            continue
        command = line[line.index("cicd-tools", match.start()) :]
        found.append(command.strip())
    return found


CASES = [(p.relative_to(REPO).as_posix(), c) for p in DOCS for c in command_lines(p)]


def test_the_docs_hold_enough_examples_to_check() -> None:
    assert len(CASES) > 30


@pytest.mark.parametrize(("doc", "command"), CASES, ids=[f"{d}:{c[:50]}" for d, c in CASES])
def test_documented_command_parses(doc: str, command: str) -> None:
    argv = shlex.split(command, comments=True)[1:]
    argv = [a for a in argv if a not in ("|", "&&")]
    if argv in (["--help"], ["--version"]):
        return
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{command}` does not parse (exit {exc.code})")
