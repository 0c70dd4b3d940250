"""``adf run`` (+ wait, cancel) as an operation: a typed request in, a typed run result out.

No argparse and no printing (progress goes to logging): the CLI (``cli/adf_cloud.py``) renders the result, and
``flow`` records it as evidence. A SIGINT/SIGTERM while waiting cancels the run (recursively) unless the request
says not to (the Azure ML jobs the run submitted too: ``adf/cancel.py``), then raises ``Interrupted``.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cicd_tools.adf.client import ArmCalls, FactoryApi, FactoryRef
from cicd_tools.support.errors import CicdError, ExitCode, Interrupted, UsageError

if TYPE_CHECKING:
    from cicd_tools.adf.cancel import CancelResult

log = logging.getLogger("cicd_tools.adf")

CLEANUP_RETRY = 1.0  # seconds a cleanup or report call may keep retrying after the deadline (then best effort)
CANCEL_GRACE = 60.0  # seconds to wait for a cancelled run to reach Cancelled before reporting anyway
INTERRUPT_GRACE = 5.0  # the same after SIGINT/SIGTERM: a cancelled CI step is killed within seconds


@dataclass(frozen=True)
class AdfRunRequest:
    factory: FactoryRef
    pipeline: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    wait: bool = True
    timeout: float = 7200.0
    timeout_text: str = "2h"  # as the user wrote it, for the report's message
    poll: float = 15.0
    cancel: bool = True  # cancel the run (and the Azure ML jobs it submitted) on timeout or a signal
    arm_endpoint: str | None = None  # where the submitted jobs' workspace is reached (their cancel)


@dataclass(frozen=True)
class ActivityResult:
    activity_name: str
    activity_type: str | None
    status: str | None
    pipeline_run_id: str | None
    activity_run_id: str | None
    error: dict[str, Any] | None


@dataclass(frozen=True)
class AdfRunResult:
    """The run as reported: typed fields for callers, ``report`` (redacted) for the JSON output."""

    run_id: str
    pipeline: str
    factory: str
    status: str
    exit_code: int
    report: dict[str, Any]
    message: str = ""
    run_start: str | None = None
    run_end: str | None = None
    duration_ms: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    activities: tuple[ActivityResult, ...] = ()
    child_runs: tuple[dict[str, Any], ...] = ()
    timed_out: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def result_from_report(report: dict[str, Any], exit_code: int, *, timed_out: bool = False) -> AdfRunResult:
    """The typed view of a run report (``adf.wait.describe_run``'s shape); the one place its keys are read."""
    def activity(a: Mapping[str, Any]) -> ActivityResult:
        error = a.get("error")
        return ActivityResult(str(a.get("activityName")), _text(a.get("activityType")), _text(a.get("status")),
                              _text(a.get("pipelineRunId")), _text(a.get("activityRunId")),
                              dict(error) if isinstance(error, Mapping) and error else None)

    duration = report.get("durationInMs")
    return AdfRunResult(
        run_id=str(report.get("runId")), pipeline=str(report.get("pipeline")), factory=str(report.get("factory")),
        status=str(report.get("status")), exit_code=exit_code, report=report, message=str(report.get("message") or ""),
        run_start=_text(report.get("runStart")), run_end=_text(report.get("runEnd")),
        duration_ms=int(duration) if isinstance(duration, (int, float)) else None,
        parameters=dict(report.get("parameters") or {}),
        activities=tuple(activity(a) for a in report.get("activities") or [] if isinstance(a, Mapping)),
        child_runs=tuple(dict(c) for c in report.get("childRuns") or [] if isinstance(c, Mapping)),
        timed_out=timed_out,
    )


def factory_api_for(credential: Any, ref: FactoryRef, arm_endpoint: str) -> FactoryApi:
    """The factory facade over the Data Factory client. Raises: UsageError for a non-https endpoint."""
    from cicd_tools.adf.client import MgmtDataFactory, datafactory_client

    endpoint = str(arm_endpoint).rstrip("/")
    if not endpoint.startswith("https://"):
        raise UsageError(f"--arm-endpoint must be an https:// URL, got {arm_endpoint!r}")
    return MgmtDataFactory(datafactory_client(credential, ref.subscription_id, endpoint))


def redacted(value: Any) -> Any:
    from cicd_tools.support.redact import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def pipeline_parameters(api: FactoryApi, calls: ArmCalls, ref: FactoryRef, pipeline: str) -> set[str] | None:
    """The parameter names the PUBLISHED pipeline declares; None when it cannot be read (the caller decides)."""
    try:
        pipelines = calls("list pipelines", lambda: api.list_resources(ref, "pipelines"))
    except CicdError as err:
        log.info("could not read the published pipelines of %s: %s", ref.name, err.message)
        return None
    for item in pipelines:
        if str(item.get("name")) == pipeline:
            declared = (item.get("properties") or {}).get("parameters") or {}
            return {str(name) for name in declared}
    return None


def run_pipeline(
    api: FactoryApi,
    request: AdfRunRequest,
    *,
    calls: ArmCalls | None = None,
    on_started: Callable[[str], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> AdfRunResult:
    """createRun, then (with ``request.wait``) wait, explain and cancel on timeout.

    One deadline (``request.timeout``, createRun included) and one retry policy for every call: transient faults
    are retried within it, and at the deadline the run and the Azure ML jobs it submitted are cancelled (exit 6
    naming what was last seen). ``on_started`` hears the run id before anything else can fail; ``on_status`` each
    status the caller should publish. Raises: Interrupted (after cancelling; ``details['cancel']``), CicdError.
    """
    import time

    from cicd_tools.adf.wait import run_summary

    calls = calls or ArmCalls(deadline=time.monotonic() + request.timeout if request.wait else None)
    ref = request.factory
    log.info("createRun %s in factory %s: runs the PUBLISHED definition (`cicd-tools adf diff` shows what differs "
             "from your branch)", request.pipeline, ref.name)
    run_id = calls(f"createRun {request.pipeline}",
                   lambda: api.create_run(ref, request.pipeline, dict(request.parameters)))
    try:
        # Evidence first: the run id is out before anything else can fail.
        if on_started is not None:
            on_started(run_id)
        if on_status is not None:
            on_status("Queued")
        log.info("pipeline run %s started (factory %s, pipeline %s)", run_id, ref.name, request.pipeline)
        if not request.wait:
            try:
                run = calls(f"get pipeline run {run_id}", lambda: api.get_run(ref, run_id))
            except Interrupted:
                raise
            except CicdError as err:  # the run exists: a failed look at it must not fail the step
                log.info("could not read run %s yet (%s); reporting it as Queued", run_id, err.message)
                run = {"runId": run_id, "pipelineName": request.pipeline, "status": "Queued"}
            data = run_summary(run, ref.name, [])
            data.update(armCalls=calls.calls, childRuns=[])
            return result_from_report(redacted(data), int(ExitCode.OK))
        return _wait_and_report(api, calls, request, run_id, on_status)
    except (Interrupted, KeyboardInterrupt) as stop:
        if not request.wait:
            raise
        previous = _ignore_second_signals()
        calls.deadline = time.monotonic() + CLEANUP_RETRY  # cleanup: best effort, retried only briefly
        cancel: CancelResult | None = None
        try:
            status = "InProgress"
            if request.cancel:
                # CI runners kill a cancelled step within seconds: send the cancels, watch only briefly.
                cancel = _cancel(api, calls, request, run_id, grace=INTERRUPT_GRACE)
                status = cancel.run_status
            if on_status is not None:
                on_status(status)
        finally:
            _restore_signals(previous)
        error = Interrupted(f"interrupted while waiting for pipeline run {run_id}; "
                            + ("left it running (--no-cancel)" if cancel is None else cancel.line()),
                            hint="Re-run `cicd-tools adf run` to start a new run.")
        error.details = {"cancel": cancel.as_dict() if cancel is not None else None}  # type: ignore[attr-defined]
        raise error from stop


def _cancel(api: FactoryApi, calls: ArmCalls, request: AdfRunRequest, run_id: str, *,
            grace: float = CANCEL_GRACE) -> CancelResult:
    """Cancel the run, its children and the Azure ML jobs they submitted; says so on stderr. Never raises."""
    from cicd_tools.adf.cancel import cancel_run_and_jobs

    result = cancel_run_and_jobs(api, calls, request.factory, run_id, arm_endpoint=request.arm_endpoint, grace=grace)
    for problem in result.errors:
        log.warning("while cancelling run %s: %s", run_id, problem)
    log.warning("%s", result.line())
    return result


def _wait_and_report(api: FactoryApi, calls: ArmCalls, request: AdfRunRequest, run_id: str,
                     on_status: Callable[[str], None] | None) -> AdfRunResult:
    import time

    from cicd_tools.adf.wait import describe_run, run_summary, wait_for_run

    ref = request.factory
    left = (calls.deadline - time.monotonic()) if calls.deadline is not None else request.timeout
    waited = wait_for_run(api, calls, ref, run_id, timeout=max(0.0, left), poll=request.poll, progress=_progress)
    run = waited.run
    exit_code = int(ExitCode.OK) if run.get("status") == "Succeeded" else int(ExitCode.RUN_FAILED)
    timed_out = waited.timed_out
    last_seen = calls.last_seen  # what the call the deadline cut short saw (None when it was answered)
    seen = f" (last seen: {last_seen})" if last_seen else ""
    cancel: CancelResult | None = None
    # After the wait: the report (and, on a timeout, the cancel) get a short retry budget of their own.
    calls.deadline = max(calls.deadline or 0.0, time.monotonic() + CLEANUP_RETRY)
    if timed_out:
        exit_code = int(ExitCode.TIMEOUT)
        if request.cancel:
            log.warning("pipeline run %s did not finish within %s%s; cancelling it (recursive) and the Azure ML jobs "
                        "it submitted", run_id, request.timeout_text, seen)
            cancel = _cancel(api, calls, request, run_id)
        try:
            run = calls(f"get pipeline run {run_id}", lambda: api.get_run(ref, run_id))
        except CicdError as err:
            log.warning("could not read run %s after the timeout: %s", run_id, err.message)
    if on_status is not None:
        on_status(str(run.get("status")))
    try:
        report = describe_run(api, calls, ref, run)
    except CicdError as err:  # the outcome is known from the run itself: the activity list is best effort
        log.warning("could not list the activity runs of %s: %s", run_id, err.message)
        report = run_summary(run, ref.name, [])
        report.update(childRuns=[], activitiesUnavailable=err.message)
    report["armCalls"] = calls.calls
    if cancel is not None:
        report["cancel"] = cancel.as_dict()
    if timed_out:
        report["lastSeen"] = last_seen
        report["message"] = (f"timed out after {request.timeout_text}" + seen + "; "
                             + ("left running (--no-cancel)" if cancel is None
                                else f"the run was cancelled; {cancel.jobs_line()}"))
    return result_from_report(redacted(report), exit_code, timed_out=timed_out)


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


def cancel_run(api: FactoryApi, calls: ArmCalls, ref: FactoryRef, run_id: str, *, grace: float = CANCEL_GRACE) -> str:
    """Cancel the run and its children, then watch it for up to ``grace`` seconds. Returns its status.

    Never raises a CicdError: a failed cancel is logged with the run id, and the caller reports what it has.
    """
    import time

    deadline = time.monotonic() + grace
    status = "Canceling"
    try:
        calls(f"cancel pipeline run {run_id}", lambda: api.cancel_run(ref, run_id, recursive=True),
              deadline=deadline)
        while time.monotonic() < deadline:
            status = str(calls(f"get pipeline run {run_id}", lambda: api.get_run(ref, run_id),
                               deadline=deadline).get("status"))
            if status in ("Cancelled", "Succeeded", "Failed"):
                break
            time.sleep(1.0)
    except CicdError as err:
        log.warning("could not cancel pipeline run %s: %s; cancel it in the ADF monitor", run_id, err.message)
        return "InProgress" if status == "Canceling" else status
    log.info("pipeline run %s: %s", run_id, status)
    return status


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
