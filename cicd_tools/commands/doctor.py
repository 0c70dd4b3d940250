"""``cicd-tools doctor``: is this Python environment able to run the toolkit?"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from cicd_tools.commands._base import Context, Outcome
from cicd_tools.errors import ExitCode


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check azure.ai.ml imports, marshmallow<4, pins and the credential in use"
    )
    parser.add_argument("--constraints", type=Path, help="constraints file to compare against")
    parser.add_argument("--skip-import", action="store_true", help="do not try importing azure.ai.ml")
    parser.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.doctor import find_constraints, run_checks

    checks = run_checks(args.constraints or find_constraints(), import_check=not args.skip_import)
    failed = [c for c in checks if not c.ok]
    warned = [c for c in checks if c.ok and c.warning]
    width = max(len(c.name) for c in checks)
    lines = [f"{c.status:<4}  {c.name:<{width}}  {c.detail}" for c in checks]
    fixes = list(dict.fromkeys(c.fix for c in failed if c.fix))
    suggestions = list(dict.fromkeys(c.fix for c in warned if c.fix and c.fix not in fixes))
    if fixes:
        lines.append("\nfix:")
        lines.extend(f"  {fix}" for fix in fixes)
    if suggestions:
        lines.append("\nsuggested (warnings: they do not fail the check):")
        lines.extend(f"  {fix}" for fix in suggestions)
    data = {"ok": not failed, "checks": [asdict(c) | {"status": c.status} for c in checks], "fixes": fixes,
            "warnings": [f"{c.name}: {c.detail}" for c in warned], "suggestions": suggestions}
    for c in failed:
        ctx.ci.annotate("error", f"doctor: {c.name}: {c.detail}", title="cicd-tools doctor")
    for c in warned:
        ctx.ci.annotate("warning", f"doctor: {c.name}: {c.detail}", title="cicd-tools doctor")
    return Outcome(data=data, text="\n".join(lines), exit_code=int(ExitCode.USAGE) if failed else 0)
