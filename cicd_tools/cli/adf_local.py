"""``cicd-tools adf lint`` and ``cicd-tools adf run-local``: check and run ADF pipelines without Azure.

``commands/adf.py`` calls ``register_local(adf_subparsers)``. Library imports stay inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cicd_tools.cli._base import Context, Outcome
from cicd_tools.support.errors import ExitCode, UsageError


def register_local(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lint`` and ``run-local`` to the ``adf`` command group."""
    lint = sub.add_parser(
        "lint",
        help="lint pipelines: factory folders (Git layout), pipeline files, ARM templates",
        description="Exit codes: 0 clean, 1 a finding at or above --fail-on, 2 usage error.",
    )
    lint.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="factory folder, folder or JSON file")
    lint.add_argument(
        "--fail-on",
        choices=("error", "warning", "info"),
        default="error",
        help="lowest severity that makes the command exit 1 (default: error)",
    )
    lint.add_argument(
        "--format",
        choices=("text", "json", "annotations"),
        default="text",
        dest="lint_format",
        help="text (default), json, or CI annotations (Azure DevOps / GitHub) plus text",
    )
    lint.set_defaults(handler=_lint)

    run = sub.add_parser(
        "run-local",
        help="run a pipeline locally (control flow, variables, WebActivity over real HTTP)",
        description="Exit codes: 0 the run Succeeded, 4 it Failed, 2 the pipeline cannot run or the run passed a"
        " limit of the local runner (docs/limits.md).",
    )
    run.add_argument("pipeline_file", type=Path, metavar="PIPELINE_FILE", help="pipeline JSON or ARM template")
    run.add_argument(
        "--factory",
        type=Path,
        metavar="DIR",
        help="factory folder (Git layout): global parameters and pipelines for ExecutePipeline",
    )
    run.add_argument("--pipeline", metavar="NAME", help="which pipeline of a file holding several")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter; VALUE is read as JSON when it parses (5, true, [1]), else as a string, then"
        ' converted to the declared type (a String parameter given 5 gets "5")',
    )
    run.add_argument(
        "--global",
        dest="globals",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a global parameter of the factory (e.g. storageBlobEndpoint=https://127.0.0.1:10000/acc);"
        " VALUE is converted to the declared type",
    )
    run.set_defaults(handler=_run_local)


# --- lint -------------------------------------------------------------------------------------------


def _lint(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.adf.lint import lint_paths

    for path in args.paths:
        _require_file_or_folder(path)
    report = lint_paths(args.paths)
    failed = report.failed(args.fail_on)
    data: dict[str, Any] = {**report.to_dict(), "failOn": args.fail_on, "failed": failed}
    exit_code = int(ExitCode.FINDINGS) if failed else int(ExitCode.OK)
    if args.lint_format == "annotations":
        for finding in report.findings:
            ctx.ci.annotate(
                finding.severity,
                f"{finding.message}. Fix: {finding.fix}",
                file=finding.file,
                line=finding.line,
                title=f"{finding.rule} {finding.pipeline or ''}".strip(),
            )
    if args.lint_format == "json":
        return Outcome(data=data, text=json.dumps(data, indent=2), exit_code=exit_code)
    return Outcome(data=data, text=_lint_text(report), exit_code=exit_code)


def _require_file_or_folder(path: Path) -> None:
    """A path the user named must exist and be a file or folder: a typo is a usage error, not a finding."""
    if not path.exists():
        raise UsageError(f"no such file or folder: {path}", hint="Check the path (relative to the current folder).")
    if not (path.is_file() or path.is_dir()):
        raise UsageError(
            f"{path} is neither a regular file nor a folder (a FIFO, socket or device)",
            hint="Name the pipeline JSON files or the factory folder instead.",
        )


def _lint_text(report: Any) -> str:
    from cicd_tools.support.cisafe import shown

    lines = []
    for f in report.findings:
        # file, pipeline and activity names are user text: one finding stays on its line (issue 19)
        where = f"{shown(f.file)}:{f.line}" if f.line else shown(f.file)
        scope = "/".join(shown(part) for part in (f.pipeline, f.activity) if part)
        lines.append(
            f"{where}: {f.severity} {f.rule} [{scope}] {f.message}"
            if scope
            else f"{where}: {f.severity} {f.rule} {f.message}"
        )
        lines.append(f"    fix: {f.fix}  ({f.path})")
    counts = report.counts()
    lines.append(
        f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info in"
        f" {report.pipelines} pipeline(s) from {report.files} file(s)"
    )
    return "\n".join(lines)


# --- run-local --------------------------------------------------------------------------------------


def _run_local(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.adf.loader import is_factory_folder, load_factory, load_file
    from cicd_tools.adf.runner import run_pipeline
    from cicd_tools.adf.web import DirectOrigins, RequestsWebCaller
    from cicd_tools.adf.web_identity import AzureIdentityTokens
    from cicd_tools.cli._adf_common import parse_pairs

    _require_file_or_folder(args.pipeline_file)
    if not args.pipeline_file.is_file():
        raise UsageError(f"{args.pipeline_file} is a folder; name the pipeline JSON file",
                         hint="Pass the factory folder with --factory and the pipeline file as PIPELINE_FILE.")
    loaded = load_file(args.pipeline_file)
    if loaded.problems and not loaded.pipelines:
        raise UsageError(f"{args.pipeline_file}: {loaded.problems[0].message}")
    factory = loaded.factory
    if args.factory is not None:
        if not is_factory_folder(args.factory):
            raise UsageError(f"{args.factory} is not a factory folder (no pipeline/ inside)")
        factory = load_factory(args.factory).factory
    from cicd_tools.adf.loader import find_pipeline

    try:
        doc = find_pipeline(loaded, args.pipeline)
    except LookupError as err:
        raise UsageError(f"{args.pipeline_file}: {err}") from None
    factory = _with_globals(factory, parse_pairs(args.globals, "--global"))
    http = RequestsWebCaller(tokens=AzureIdentityTokens(), origins=DirectOrigins(_sandbox_hosts(os.environ)))
    try:
        result = run_pipeline(doc, parameters=parse_pairs(args.param, "--param"), factory=factory, http=http)
    finally:
        http.close()
    breach = result.limit_breach()
    if breach is not None and breach.error is not None:
        # Past a local safety limit the run says nothing about ADF (which has no such limit): a usage error.
        raise UsageError(
            f"the local run stopped at a limit of the local runner: activity '{breach.activity_name}'"
            f" ({breach.error['errorCode']}): {breach.error['message']}",
            hint="The local runner's limits (strings of 4,194,304 characters, arrays of 100,000 items, 200,000"
            " activity runs, 100,000 Until iterations) are listed in docs/limits.md; no flag raises them.")
    exit_code = int(ExitCode.OK) if result.succeeded else int(ExitCode.RUN_FAILED)
    return Outcome(data=result.to_dict(), text=_run_text(result), exit_code=exit_code)


def _sandbox_hosts(environ: Mapping[str, str]) -> dict[str, str]:
    """With the sandbox's variables set (`cicd-tools sandbox env`), the real Azure host names of the sandbox's
    storage account and of ARM resolve to it, so a factory's global parameters work unchanged offline."""
    if not environ.get("CICD_SANDBOX_STATE_DIR"):
        return {}
    hosts: dict[str, str] = {}
    account, blob = environ.get("CICD_STORAGE_ACCOUNT"), environ.get("CICD_BLOB_ENDPOINT")
    if account and blob:
        hosts[f"{account}.blob.core.windows.net"] = blob
    if environ.get("CICD_ARM_ENDPOINT"):
        hosts["management.azure.com"] = environ["CICD_ARM_ENDPOINT"]
    if hosts:
        import logging

        logging.getLogger("cicd_tools.adf").info(
            "sandbox environment: %s resolve to the sandbox (calls leave from this machine, the CI agent's network)",
            ", ".join(sorted(hosts)))
    return hosts


def _with_globals(factory: Any, overrides: dict[str, Any]) -> Any:
    """The factory with ``--global`` values laid over its global parameters (typed like the declared ones)."""
    import dataclasses

    from cicd_tools.adf.run_rules import coerce_parameter

    if not overrides:
        return factory
    declared = dict(factory.global_parameters or {})
    for name, value in overrides.items():
        spec = declared.get(name)
        kind = str(spec.get("type", "")) if isinstance(spec, dict) else ""
        declared[name] = {"type": kind or "String", "value": coerce_parameter(value, kind)}
    return dataclasses.replace(factory, global_parameters=declared)


def _run_text(result: Any) -> str:
    rows = [("ACTIVITY", "TYPE", "STATUS", "MS", "ERROR")]
    for run in result.activity_runs:
        name = run.activity_name if run.iteration is None else f"{run.activity_name} [{run.iteration}]"
        error = f"{run.error['errorCode']}: {run.error['message']}" if run.error else ""
        rows.append((name, run.activity_type, run.status, str(run.duration_ms), error[:100]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows]
    lines.append(
        f"pipeline {result.pipeline_name} run {result.run_id}: {result.status}"
        + (f" ({result.message})" if result.message else "")
    )
    return "\n".join(line.rstrip() for line in lines)
