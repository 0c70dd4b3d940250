"""Generate cicd_tools/cli/examples.py: up to three examples per subcommand for its `--help`, taken from the docs
pages (docs/commands/*.md), whose every example a test parses with the real parser. `--check` fails when stale."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "cicd_tools" / "cli" / "examples.py"
sys.path.insert(0, str(REPO))

from cicd_tools.cli.main import build_parser  # noqa: E402
from scripts.doc_commands import command_lines as doc_command_lines  # noqa: E402


def command_lines(path: Path) -> list[str]:
    """The page's documented commands (as the docs test reads them), trailing comment dropped, at most 160 chars."""
    found = []
    for command in doc_command_lines(path):
        command = re.sub(r" {2,}", " ", command.split(" #", 1)[0]).strip()
        if command and len(command) <= 160:
            found.append(command)
    return found


def examples() -> dict[str, list[str]]:
    parser = build_parser()
    out: dict[str, list[str]] = {}
    for page in sorted((REPO / "docs" / "commands").glob("*.md")):
        for command in command_lines(page):
            try:
                ns = parser.parse_args([a for a in shlex.split(command, comments=True)[1:] if a not in ("|", "&&")])
            except SystemExit:
                continue
            group = getattr(ns, "command", None)
            if group is None:
                continue
            sub = getattr(ns, f"{group}_command", None)
            key = f"{group} {sub}" if sub else group
            bucket = out.setdefault(key, [])
            if command not in bucket and len(bucket) < 3:
                bucket.append(command)
    return dict(sorted(out.items()))


def render() -> str:
    lines = ['"""Examples for each command\'s `--help` epilog, generated from docs/commands/*.md by',
             'scripts/help_examples.py (a test fails when this file is stale). Do not edit by hand."""', "",
             "from __future__ import annotations", "", "EXAMPLES: dict[str, tuple[str, ...]] = {"]
    for key, commands in examples().items():
        lines.append(f"    {key!r}: (")
        lines.extend(f"        {c!r}," for c in commands)
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--check", action="store_true", help="exit 1 when the checked-in file is stale")
    args = cli.parse_args()
    text = render()
    if args.check:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(REPO)} is stale: run python scripts/help_examples.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
