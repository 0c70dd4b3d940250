"""Every command's `--help` ends with examples, taken from the docs pages whose examples a test parses."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cicd_tools.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]


def leaves() -> dict[str, argparse.ArgumentParser]:
    """Each runnable command: a group without subcommands, or each subcommand of a group."""
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, argparse.ArgumentParser] = {}
    for name, group in top.choices.items():
        sub = next((a for a in group._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            out[name] = group
        else:
            out.update({f"{name} {child}": parser for child, parser in sub.choices.items()})
    return out


LEAVES = leaves()


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_each_command_help_ends_with_examples_that_parse(command: str) -> None:
    import shlex

    help_text = LEAVES[command].format_help()
    assert "\nexamples:\n" in help_text, f"`cicd-tools {command} --help` shows no example"
    examples = [line.strip() for line in help_text.split("\nexamples:\n", 1)[1].splitlines() if line.strip()]
    assert examples
    for example in examples:
        argv = shlex.split(example)
        assert argv[0] == "cicd-tools"
        build_parser().parse_args(argv[1:])  # raises (exit 2) if an example does not parse


def test_the_generated_examples_are_current_with_the_docs() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "help_examples.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
