"""``cicd-tools completion bash|zsh``: a shell completion script generated from the real parser (shtab)."""

from __future__ import annotations

import argparse

from cicd_tools.cli._base import Context, Outcome
from cicd_tools.support.errors import UsageError

SHELLS = ("bash", "zsh")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Print a completion script for every command and flag of this cicd-tools (bash: source its"
        " output from ~/.bashrc; zsh: save it as _cicd-tools in a folder on $fpath).",
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(handler=_completion)


def _completion(args: argparse.Namespace, ctx: Context) -> Outcome:
    import shtab

    if ctx.full_parser is None:
        raise UsageError("completion needs the whole command line parser", hint="Run it as `cicd-tools completion`.")
    script = shtab.complete(ctx.full_parser(), shell=args.shell)
    return Outcome(data={"shell": args.shell, "script": script}, text=script)
