"""Every `cicd-tools ...` example in the README, the docs site and the CI pipelines parses with the real CLI parser,
and every command group's page shows an example of each of its subcommands."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from cicd_tools.cli.main import build_parser
from scripts.doc_commands import COMMANDS, command_lines

REPO = Path(__file__).resolve().parents[2]
DOCS = [
    REPO / "README.md",
    REPO / "action.yml",
    *sorted((REPO / "docs").rglob("*.md")),
    *sorted((REPO / "pipelines").rglob("*.yml")),
]


def parse(command: str) -> argparse.Namespace:
    argv = shlex.split(command, comments=True)[1:]
    argv = [a for a in argv if a not in ("|", "&&")]
    return build_parser().parse_args(argv)


CASES = [(p.relative_to(REPO).as_posix(), c) for p in DOCS for c in command_lines(p)]


def test_the_docs_hold_enough_examples_to_check() -> None:
    assert len(CASES) > 30
    assert any(doc.startswith("docs/") for doc, _ in CASES)


@pytest.mark.parametrize(("doc", "command"), CASES, ids=[f"{d}:{c[:50]}" for d, c in CASES])
def test_documented_command_parses(doc: str, command: str) -> None:
    if shlex.split(command, comments=True)[1:] in (["--help"], ["--version"]):
        return
    try:
        parse(command)
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{command}` does not parse (exit {exc.code})")


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:  # type: ignore[type-arg]
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def command_groups() -> dict[str, tuple[str | None, list[str]]]:
    """Each command group of the real parser: the dest its subcommand lands in, and its subcommands."""
    top = _subparsers(build_parser())
    assert top is not None
    groups: dict[str, tuple[str | None, list[str]]] = {}
    for name, group in top.choices.items():
        sub = _subparsers(group)
        groups[name] = (sub.dest, list(sub.choices)) if sub else (None, [])
    return groups


GROUPS = command_groups()


def test_every_command_module_is_a_group_with_a_page() -> None:
    assert set(GROUPS) == set(COMMANDS.split("|"))
    pages = {p.stem for p in (REPO / "docs" / "commands").glob("*.md")} - {"index"}
    assert pages == set(GROUPS)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_each_subcommand_has_an_example_on_its_group_page(group: str) -> None:
    dest, subcommands = GROUPS[group]
    page = REPO / "docs" / "commands" / f"{group}.md"
    shown: set[str | None] = set()
    for command in command_lines(page):
        ns = parse(command)
        if ns.command == group:
            shown.add(getattr(ns, dest) if dest else None)
    expected: set[str | None] = set(subcommands) if subcommands else {None}
    missing = sorted(map(str, expected - shown))
    assert not missing, f"{page.relative_to(REPO)} has no example of: {missing}"
