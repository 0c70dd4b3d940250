"""``cicd-tools doctor``: is this Python environment able to run the toolkit?"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from cicd_tools.cli._base import Context, Outcome
from cicd_tools.support.errors import ExitCode, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check azure.ai.ml imports, marshmallow<4, pins and the credential in use"
    )
    parser.add_argument("--constraints", type=Path, help="constraints file to compare against")
    parser.add_argument("--skip-import", action="store_true", help="do not try importing azure.ai.ml")
    parser.add_argument("--online", action="store_true",
                        help="also acquire an ARM token (for CICD_ARM_ENDPOINT, default the public cloud) and say "
                        "which azure-identity class answered, or why each failed")
    parser.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.doctor import find_constraints, run_checks
    from cicd_tools.settings.resolve import Settings

    if args.constraints is not None:
        _require_readable_text(args.constraints)
    online = Settings.from_env().arm_endpoint if args.online else None
    checks = run_checks(args.constraints or find_constraints(), import_check=not args.skip_import,
                        online_arm_endpoint=online)
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


def _require_readable_text(path: Path) -> None:
    """``--constraints`` must name a readable UTF-8 file: a typo is a usage error (exit 2), not a crash."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist" if not path.exists() else "is not a regular file"
        raise UsageError(f"--constraints {path} {what}", hint="Name a pip constraints file such as constraints.txt.")
    from cicd_tools.support.bounded import read_text_bounded

    try:  # a FIFO swapped in, or a file over the size cap: InputRefused (a usage error)
        read_text_bounded(path, what="constraints file")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --constraints {path}: {exc}",
                         hint="Name a readable UTF-8 pip constraints file.") from None
