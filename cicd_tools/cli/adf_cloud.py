"""``cicd-tools adf run | deploy | diff``: the published factory in Azure (or the sandbox), over ARM.

``commands/adf.py`` calls ``register_cloud(adf_subparsers)``. azure-mgmt-datafactory is imported only
inside these handlers (``adf eval``, ``lint`` and ``run-local`` never load it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.cli._base import Context, Outcome, env_default
from cicd_tools.support.errors import CicdError, ExitCode, Interrupted, UsageError

if TYPE_CHECKING:
    from cicd_tools.adf.cancel import CancelResult
    from cicd_tools.adf.client import ArmCalls, FactoryApi, FactoryRef

log = logging.getLogger("cicd_tools.adf")

DEFAULT_TIMEOUT = "2h"
DEFAULT_POLL = "15s"
CLEANUP_RETRY = 1.0  # seconds a cleanup or report call may keep retrying after the deadline (then best effort)
CANCEL_GRACE = 60.0  # seconds to wait for a cancelled run to reach Cancelled before reporting anyway
INTERRUPT_GRACE = 5.0  # the same after SIGINT/SIGTERM: a cancelled CI step is killed within seconds


def add_factory_flags(parser: argparse.ArgumentParser) -> None:
    """Which factory, through which management endpoint."""
    env_default(parser, "--subscription-id", env="CICD_SUBSCRIPTION_ID", help="subscription of the factory")
    env_default(parser, "--resource-group", env="CICD_RESOURCE_GROUP", help="resource group of the factory")
    env_default(parser, "--factory", env="CICD_FACTORY", help="Data Factory name")
    env_default(parser, "--arm-endpoint", env="CICD_ARM_ENDPOINT", default="https://management.azure.com",
                help="Azure Resource Manager endpoint")


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


def factory_ref(args: argparse.Namespace) -> FactoryRef:
    from cicd_tools.adf.client import FactoryRef
    from cicd_tools.settings.resolve import Settings

    settings = Settings.from_env(subscription_id=args.subscription_id, resource_group=args.resource_group,
                                 factory=args.factory)
    settings.require("subscription_id", "resource_group", "factory")
    assert settings.subscription_id and settings.resource_group and settings.factory
    return FactoryRef(settings.subscription_id, settings.resource_group, settings.factory)


def factory_api(args: argparse.Namespace, ref: FactoryRef) -> FactoryApi:
    """The factory facade over the client ``datafactory_client`` builds."""
    from cicd_tools.adf.client import MgmtDataFactory
    from cicd_tools.cli._clients import datafactory_client
    from cicd_tools.credentials import build_credential

    endpoint = str(args.arm_endpoint).rstrip("/")
    if not endpoint.startswith("https://"):
        raise UsageError(f"--arm-endpoint must be an https:// URL, got {args.arm_endpoint!r}")
    client = datafactory_client(build_credential(), ref.subscription_id, endpoint)
    return MgmtDataFactory(client)


def _run(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.adf.client import ArmCalls
    from cicd_tools.cli.adf import parse_pairs
    from cicd_tools.storage.leases import parse_duration

    ref = factory_ref(args)
    parameters = parse_pairs(args.param, "--param")
    timeout, poll = parse_duration(args.timeout), parse_duration(args.poll)
    api = factory_api(args, ref)
    # One deadline for every call of the command (--timeout bounds the wait, createRun included).
    calls = ArmCalls(deadline=time.monotonic() + timeout if args.wait else None)
    log.info("createRun %s in factory %s: runs the PUBLISHED definition (`cicd-tools adf diff` shows what differs "
             "from your branch)", args.pipeline, ref.name)
    run_id = calls(f"createRun {args.pipeline}", lambda: api.create_run(ref, args.pipeline, parameters))
    try:
        # Evidence first: the run id is out before anything else can fail.
        ctx.ci.set_output("adfRunId", run_id)
        ctx.ci.set_output("adfRunStatus", "Queued")
        log.info("pipeline run %s started (factory %s, pipeline %s)", run_id, ref.name, args.pipeline)
        if not args.wait:
            try:
                run = calls(f"get pipeline run {run_id}", lambda: api.get_run(ref, run_id))
            except Interrupted:
                raise
            except CicdError as err:  # the run exists: a failed look at it must not fail the step
                log.info("could not read run %s yet (%s); reporting it as Queued", run_id, err.message)
                run = {"runId": run_id, "pipelineName": args.pipeline, "status": "Queued"}
            return _outcome(ctx, _brief(run, ref, calls), int(ExitCode.OK))
        return _wait_and_report(args, ctx, api, calls, ref, run_id, timeout, poll)
    except (Interrupted, KeyboardInterrupt) as stop:
        if not args.wait:
            raise
        previous = _ignore_second_signals()
        calls.deadline = time.monotonic() + CLEANUP_RETRY  # cleanup: best effort, retried only briefly
        try:
            status, cancel = "InProgress", None
            if not args.no_cancel:
                # CI runners kill a cancelled step within seconds: send the cancels, watch only briefly.
                cancel = _cancel(api, calls, ref, run_id, args.arm_endpoint, grace=INTERRUPT_GRACE)
                status = cancel.run_status
            ctx.ci.set_output("adfRunStatus", status)
        finally:
            _restore_signals(previous)
        error = Interrupted(f"interrupted while waiting for pipeline run {run_id}; "
                            + ("left it running (--no-cancel)" if cancel is None else cancel.line()),
                            hint="Re-run `cicd-tools adf run` to start a new run.")
        error.details = {"cancel": cancel.as_dict() if cancel is not None else None}  # type: ignore[attr-defined]
        raise error from stop


def _brief(run: dict[str, Any], ref: FactoryRef, calls: ArmCalls) -> dict[str, Any]:
    from cicd_tools.adf.wait import run_summary

    data = run_summary(run, ref.name, [])
    data.update(armCalls=calls.calls, childRuns=[])
    return data


def _wait_and_report(args: argparse.Namespace, ctx: Context, api: FactoryApi, calls: ArmCalls, ref: FactoryRef,
                     run_id: str, timeout: float, poll: float) -> Outcome:
    from cicd_tools.adf.wait import describe_run, wait_for_run

    left = (calls.deadline - time.monotonic()) if calls.deadline is not None else timeout
    waited = wait_for_run(api, calls, ref, run_id, timeout=max(0.0, left), poll=poll, progress=_progress)
    run = waited.run
    exit_code = int(ExitCode.OK) if run.get("status") == "Succeeded" else int(ExitCode.RUN_FAILED)
    timed_out = waited.timed_out
    last_seen = calls.last_seen  # what the call the deadline cut short saw (None when it was answered)
    seen = f" (last seen: {last_seen})" if last_seen else ""
    cancel = None
    # After the wait: the report (and, on a timeout, the cancel) get a short retry budget of their own.
    calls.deadline = max(calls.deadline or 0.0, time.monotonic() + CLEANUP_RETRY)
    if timed_out:
        exit_code = int(ExitCode.TIMEOUT)
        if not args.no_cancel:
            log.warning("pipeline run %s did not finish within %s%s; cancelling it (recursive) and the Azure ML jobs "
                        "it submitted", run_id, args.timeout, seen)
            cancel = _cancel(api, calls, ref, run_id, args.arm_endpoint)
        try:
            run = calls(f"get pipeline run {run_id}", lambda: api.get_run(ref, run_id))
        except CicdError as err:
            log.warning("could not read run %s after the timeout: %s", run_id, err.message)
    ctx.ci.set_output("adfRunStatus", str(run.get("status")))
    try:
        report = describe_run(api, calls, ref, run)
    except CicdError as err:  # the outcome is known from the run itself: the activity list is best effort
        log.warning("could not list the activity runs of %s: %s", run_id, err.message)
        report = _brief(run, ref, calls)
        report["activitiesUnavailable"] = err.message
    report["armCalls"] = calls.calls
    if cancel is not None:
        report["cancel"] = cancel.as_dict()
    if timed_out:
        report["lastSeen"] = last_seen
        report["message"] = (f"timed out after {args.timeout}" + seen + "; "
                             + ("left running (--no-cancel)" if cancel is None
                                else f"the run was cancelled; {cancel.jobs_line()}"))
    outcome = _outcome(ctx, report, exit_code)
    ctx.ci.summary(_markdown(outcome.data if isinstance(outcome.data, dict) else report))
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


def _ignore_second_signals() -> dict[int, Any]:
    """While we cancel the run, another Ctrl-C or SIGTERM must not abandon it half-way. Returns the old handlers."""
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread (embedded use)
            break
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _cancel(api: FactoryApi, calls: ArmCalls, ref: FactoryRef, run_id: str, arm_endpoint: str, *,
            grace: float = CANCEL_GRACE) -> CancelResult:
    """Cancel the run, its children and the Azure ML jobs they submitted; says so on stderr. Never raises."""
    from cicd_tools.adf.cancel import cancel_run_and_jobs

    result = cancel_run_and_jobs(api, calls, ref, run_id, arm_endpoint=str(arm_endpoint), grace=grace)
    for problem in result.errors:
        log.warning("while cancelling run %s: %s", run_id, problem)
    log.warning("%s", result.line())
    return result


def _progress(item: dict[str, Any]) -> None:
    status = item.get("status")
    name = f"{item.get('activityName')} ({item.get('activityType')})"
    error = item.get("error") if isinstance(item.get("error"), dict) else {}
    if status == "InProgress":
        log.info("  started   %s", name)
    elif error and error.get("errorCode"):
        log.info("  %-9s %s: %s %s", str(status).lower(), name, error.get("errorCode"), error.get("message", "")[:200])
    else:
        log.info("  %-9s %s", str(status).lower(), name)


def _outcome(ctx: Context, data: dict[str, Any], exit_code: int) -> Outcome:
    data = _redacted(data)  # activity inputs/outputs may carry SAS URLs or tokens: never print them
    return Outcome(data=data, text=run_table(data), exit_code=exit_code)


def _redacted(value: Any) -> Any:
    from cicd_tools.support.redact import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


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
