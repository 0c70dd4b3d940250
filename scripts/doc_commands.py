"""The `cicd-tools ...` command lines of a documentation file, as a shell would see them.

Shared by tests/unit/test_docs_commands.py (every one must parse) and scripts/help_examples.py (the `--help`
examples are taken from them).
"""

from __future__ import annotations

import re
from pathlib import Path

from cicd_tools.cli.main import COMMAND_MODULES

COMMANDS = "|".join(m.rsplit(".", 1)[1] for m in COMMAND_MODULES)


def command_lines(path: Path) -> list[str]:
    """Commands as a shell would see them: continuation lines joined, comments dropped.

    A command inside `$(...)` (e.g. `eval "$(cicd-tools sandbox env)"`) ends at its closing parenthesis.
    """
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        match = re.search(rf"(?:^|[\s(\"'`$])cicd-tools\s+(--\w[-\w]*|{COMMANDS})\b", line)
        if not match or "`cicd-tools" in line:
            continue
        start = line.index("cicd-tools", match.start())
        command = line[start:]
        if line[:start].endswith("$("):
            command = command.split(")", 1)[0]
        found.append(command.strip())
    return found
