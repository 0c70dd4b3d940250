"""The help side of the parser: "did you mean" suggestions, ``--help`` examples from the docs, the parser tree."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any


def suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """ " (did you mean 'open'?)" for a mistyped subcommand or flag, from the names the parser knows."""
    import difflib
    import re

    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        options = re.findall(r"'([^']*)'", choice.group(2)) or [o.strip() for o in choice.group(2).split(",")]
        close = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.6)
        return f" (did you mean '{close[0]}'?)" if close else ""
    unknown = re.search(r"unrecognized arguments: (.*)", message)
    if unknown:
        flags = {flag for p in (parser, *subparsers_of(parser)) for flag in p._option_string_actions
                 if flag.startswith("--")}
        hints = []
        for token in unknown.group(1).split():
            name = token.split("=", 1)[0]
            close = difflib.get_close_matches(name, sorted(flags), n=1, cutoff=0.7) if name.startswith("--") else []
            if close:
                hints.append(close[0])
        return f" (did you mean {', '.join(hints)}?)" if hints else ""
    return ""


class _ExamplesFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that an ``examples:`` epilog keeps its lines (one command per line)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:\n"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def attach_examples(subparsers: argparse._SubParsersAction[Any], loaded: list[str]) -> None:
    """Each loaded command's (and subcommand's) ``--help`` ends with examples from the docs (cli/examples.py)."""
    from cicd_tools.cli.examples import EXAMPLES

    def attach(parser: argparse.ArgumentParser, key: str) -> None:
        examples = EXAMPLES.get(key)
        if examples and not parser.epilog:
            parser.epilog = "examples:\n" + "\n".join(f"  {command}" for command in examples)
            if parser.formatter_class is argparse.HelpFormatter:
                parser.formatter_class = _ExamplesFormatter

    for name in loaded:
        group = subparsers.choices[name]
        attach(group, name)
        for action in group._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    attach(sub, f"{name} {sub_name}")


def subparsers_of(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser below ``parser`` (groups and their actions), each once (aliases share a parser)."""
    seen: set[int] = set()
    stack = [parser]
    while stack:
        current = stack.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    if id(child) not in seen:
                        seen.add(id(child))
                        stack.append(child)
                        yield child
