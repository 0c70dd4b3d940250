"""``cicd-tools adf run | deploy | diff``: the published factory in Azure (or the sandbox), over ARM.

``commands/adf.py`` calls ``register_cloud(adf_subparsers)``. azure-mgmt-datafactory is imported only
inside these handlers (``adf eval``, ``lint`` and ``run-local`` never load it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cicd_tools.adf.operations import redacted as _redacted
from cicd_tools.cli._adf_common import add_factory_flags, factory_api, factory_ref, parse_pairs
from cicd_tools.cli._base import Context, Outcome, env_default
from cicd_tools.support.errors import UsageError

__all__ = ["_redacted", "add_factory_flags", "factory_api", "factory_ref", "register_cloud", "run_table"]

DEFAULT_TIMEOUT = "2h"
DEFAULT_POLL = "5s"  # the end of a run is seen within 5 s: 720 ARM reads an hour, far below ARM's read limits


def register_cloud(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run``, ``deploy`` and ``diff`` to the ``adf`` command group."""
    run = sub.add_parser(
        "run",
        help="trigger a published pipeline (createRun); with --wait, wait, explain and cancel on timeout",
        description="Runs the PUBLISHED pipeline (what `adf deploy` put in the factory, not your branch: "
        "`adf diff` shows the difference). Exit codes: 0 Succeeded (or started, without --wait), 4 Failed or "
        "Cancelled by someone else, 6 --timeout passed (the run was cancelled), 130 interrupted (the run was "
        "cancelled), 2 bad input or unknown pipeline/parameter, 3 Azure call failed.",
    )
    add_factory_flags(run)
    run.add_argument("--pipeline", required=True, metavar="NAME", help="published pipeline to run")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="pipeline parameter; VALUE is read as JSON when it parses (5, true, [1]), else a string")
    run.add_argument("--wait", action="store_true", help="wait for the end and report every activity run")
    env_default(run, "--timeout", env="CICD_ADF_TIMEOUT", default=DEFAULT_TIMEOUT,
                help="with --wait: cancel the run and exit 6 after this long (90s, 30m, 2h)")
    env_default(run, "--poll", env="CICD_ADF_POLL", default=DEFAULT_POLL,
                help="with --wait: longest interval between status polls (polls start at 1s and grow)")
    run.add_argument("--no-cancel", action="store_true",
                     help="leave the run going on --timeout, SIGTERM or SIGINT (default: cancel it, recursively)")
    run.set_defaults(handler=_run)

    from cicd_tools.cli.adf_publish import register_publish

    register_publish(sub)


def _run(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.adf.operations import AdfRunRequest, run_pipeline
    from cicd_tools.storage.lease_tags import parse_duration

    ref = factory_ref(args)
    parameters = parse_pairs(args.param, "--param")
    timeout, poll = parse_duration(args.timeout), parse_duration(args.poll)
    api = factory_api(args, ref)
    request = AdfRunRequest(factory=ref, pipeline=args.pipeline, parameters=parameters, wait=args.wait,
                            timeout=timeout, timeout_text=args.timeout, poll=poll, cancel=not args.no_cancel,
                            arm_endpoint=args.arm_endpoint)
    result = run_pipeline(api, request, on_started=lambda run_id: ctx.ci.set_output("adfRunId", run_id),
                          on_status=lambda status: ctx.ci.set_output("adfRunStatus", status))
    outcome = Outcome(data=result.report, text=run_table(result.report), exit_code=result.exit_code)
    if args.wait:
        ctx.ci.summary(_markdown(result.report))
    return outcome


def _markdown(report: dict[str, Any]) -> str:
    """The job summary: the run, then each activity run (children included) with its error."""
    def cell(value: Any, limit: int = 200) -> str:
        return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")[:limit]

    lines = [f"### ADF run `{report.get('runId')}`: {report.get('status')}", "",
             f"Pipeline `{report.get('pipeline')}` in factory `{report.get('factory')}`"
             + (f": {cell(report.get('message'))}" if report.get("message") else ""), "",
             "| pipeline | activity | type | status | error |", "|---|---|---|---|---|"]
    for run in [report, *report.get("childRuns", [])]:
        for act in run.get("activities", []):
            err = act.get("error") or {}
            lines.append(f"| {cell(run.get('pipeline'))} | {cell(act.get('activityName'))} | "
                         f"{cell(act.get('activityType'))} | {cell(act.get('status'))} | "
                         f"{cell((err.get('errorCode', '') + ' ' + err.get('message', '')).strip(), 800)} |")
    return "\n".join(lines) + "\n"


def run_table(report: dict[str, Any]) -> str:
    """The activity runs of the run and its children, then the failing activities' errors."""
    from cicd_tools.adf.wait import failing_activities

    rows = [("PIPELINE", "ACTIVITY", "TYPE", "STATUS")]
    for run in [report, *report.get("childRuns", [])]:
        for act in run.get("activities", []):
            rows.append((str(run.get("pipeline")), str(act.get("activityName")), str(act.get("activityType")),
                         str(act.get("status"))))
    lines = []
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in rows]
    for act in failing_activities(report):
        err = act["error"]
        lines.append(f"error in {act['activityName']}: {err['errorCode']} ({err['failureType']}, target "
                     f"{err['target']}): {err['message']}")
    lines.append(f"pipeline {report.get('pipeline')} run {report.get('runId')} in factory {report.get('factory')}: "
                 f"{report.get('status')}" + (f" ({report['message']})" if report.get("message") else "")
                 + f"; {report.get('armCalls')} ARM calls")
    return "\n".join(lines)


def repo_path(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise UsageError(f"{value}: no such folder", hint="Pass the factory's Git folder (it holds pipeline/).")
    return path
