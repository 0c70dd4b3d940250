"""``cicd-tools ci lint FILE…``: check a team's Azure DevOps / GitHub Actions YAML for this flow's pitfalls."""

from __future__ import annotations

import argparse
from pathlib import Path

from cicd_tools.ci import CiKind
from cicd_tools.cli._base import Context, Handler, Outcome
from cicd_tools.support.errors import ExitCode, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("ci", help="check CI pipeline YAML (Azure DevOps, GitHub Actions)")
    parser.set_defaults(handler=_missing(parser))
    sub = parser.add_subparsers(dest="ci_command", metavar="ACTION")
    lint = sub.add_parser(
        "lint",
        help="find the pitfalls of this flow in pipeline YAML (exit 1 on findings)",
        description=(
            "Rules: CI001 code version from the build id; CI002 firewall close without always(); CI003 an output"
            " nothing earlier sets; CI004 service connection from a runtime variable / variable group; CI005 OIDC"
            " without id-token: write; CI006 cicd-tools command or flag that does not exist; CI007 `pip install .`"
            " installing your own project. Exit codes: 0 clean, 1 findings, 2 unreadable file."
        ),
    )
    lint.add_argument("files", nargs="+", type=Path, metavar="FILE", help="pipeline, template, workflow or action YAML")
    lint.add_argument("--fail-on", choices=("error", "warning"), default="error",
                      help="lowest severity that makes the exit code 1 (default error)")
    lint.set_defaults(handler=_lint)


def _missing(parser: argparse.ArgumentParser) -> Handler:
    def handler(args: argparse.Namespace, ctx: Context) -> Outcome:
        raise UsageError(f"`cicd-tools ci` needs an action\n{parser.format_usage().rstrip()}")

    return handler


def _lint(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.cilint import lint_files
    from cicd_tools.cli.main import build_parser
    from cicd_tools.support.cisafe import shown

    findings = lint_files(args.files, build_parser())
    failing = [f for f in findings if f.severity == "error" or args.fail_on == "warning"]
    if ctx.ci.kind is not CiKind.PLAIN:
        for f in findings:
            ctx.ci.annotate(f.severity, f"{f.message}. Fix: {f.fix}", file=f.file, line=f.line, title=f.rule)
    lines = [f"{shown(f.file)}:{f.line}: {f.rule} {f.severity}: {f.message}\n  fix: {f.fix}" for f in findings]
    lines.append(f"{len(findings)} finding(s) in {len(args.files)} file(s)")
    return Outcome(data={"findings": [f.to_dict() for f in findings], "files": [str(p) for p in args.files]},
                   text="\n".join(lines), exit_code=int(ExitCode.FINDINGS) if failing else 0)
