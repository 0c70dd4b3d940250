"""Wait for a Data Factory pipeline run, with live progress, and report it with its activity and child runs.

The wait polls ``pipelineruns/{id}``: one ARM call per poll. The interval starts at ``first_poll`` and grows by half
each time up to ``FAST_POLL`` (2 s) while the run is young, and up to ``poll`` once it has run 20 times that long
(the cap is a twentieth of the time waited so far), so a short run is seen ending within about 2 s and an hour-long
one costs a call every ``poll`` seconds; the end is detected within one interval. ARM's read bucket refills 25
reads/s per principal, so even the fast polls are far from throttling. Progress (activity started / finished) needs
``queryActivityruns``: such a query is only made when the last status poll showed the run changed (``lastUpdated``
moved), and it takes its own poll slot halfway to the next status poll, so status polls stay on schedule and no poll
makes more than one call. ``Retry-After`` answers stretch the wait, never shorten it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.adf.client import (
    ArmCalls,
    DeadlineReached,
    FactoryApi,
    FactoryNotFound,
    FactoryRef,
    query_activity_runs,
)
from cicd_tools.support.errors import Interrupted

log = logging.getLogger(__name__)

TERMINAL = ("Succeeded", "Failed", "Cancelled")
GROWTH = 1.5
FAST_POLL = 2.0  # the poll cap while the run is young (the cap then grows to ``poll`` at 1/20 of the wait)
NOT_FOUND_GRACE = 30.0  # seconds after createRun during which a 404 on the run means "not visible yet"


@dataclass
class WaitResult:
    """How the wait ended: the last run JSON seen, and whether the deadline passed first."""

    run: dict[str, Any]
    timed_out: bool = False
    polls: int = 0
    seen: dict[str, str] = field(default_factory=dict)  # activityRunId -> last status reported


def wait_for_run(
    api: FactoryApi,
    calls: ArmCalls,
    ref: FactoryRef,
    run_id: str,
    *,
    timeout: float,
    poll: float = 15.0,
    first_poll: float = 1.0,
    progress: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Poll until the run is Succeeded, Failed or Cancelled, or ``timeout`` seconds pass.

    ``progress`` sees each activity run whose status changed (InProgress, then its end). Raises:
    CicdError when a call fails beyond ``calls``' retry budget.
    """
    deadline = clock() + timeout
    interval = min(first_poll, poll)
    result = WaitResult(run={})
    last_updated: Any = None
    log.info("waiting for pipeline run %s of factory %s (timeout %gs, poll up to %gs)", run_id, ref.name,
             timeout, poll)
    started = clock()
    while True:
        result.polls += 1
        try:
            result.run = calls(f"get pipeline run {run_id}", lambda: api.get_run(ref, run_id), deadline=deadline)
        except DeadlineReached:  # throttled until the deadline: the wait timed out (the caller cancels)
            result.timed_out = True
            result.run = result.run or {"runId": run_id, "status": "Queued"}
            return result
        except FactoryNotFound:
            # A run can be unknown to GET for a few seconds after createRun answered: not yet an error.
            if clock() - started > NOT_FOUND_GRACE:
                raise
            log.info("pipeline run %s is not visible yet; polling again", run_id)
            result.run = {"runId": run_id, "status": "Queued"}
        status = str(result.run.get("status", ""))
        changed = result.run.get("lastUpdated") != last_updated
        last_updated = result.run.get("lastUpdated")
        if status in TERMINAL:  # the caller's report lists the activities: no extra query in this poll
            return result
        remaining = deadline - clock()
        if remaining <= 0:
            result.timed_out = True
            return result
        step = min(interval, remaining)
        if progress is not None and changed:
            sleep(step / 2)
            result.polls += 1
            # Progress is best effort: its query may retry only until the next status poll is due.
            _report_progress(api, calls, ref, result, progress, until=clock() + max(step / 2, 1.0))
            sleep(max(0.0, min(step / 2, deadline - clock())))
        else:
            sleep(step)
        cap = min(poll, max(FAST_POLL, (clock() - started) / 20))
        interval = min(cap, interval * GROWTH)


def _report_progress(api: FactoryApi, calls: ArmCalls, ref: FactoryRef, result: WaitResult,
                     progress: Callable[[dict[str, Any]], None], until: float | None = None) -> None:
    try:
        activities = query_activity_runs(api, calls, ref, result.run, deadline=until)
    except Interrupted:  # a signal during the query must still stop the wait (the caller cancels the run)
        raise
    except Exception as err:  # progress is best effort: the status poll decides the outcome
        log.info("could not list activity runs for progress: %s", err)
        return
    for item in activities:
        key = str(item.get("activityRunId"))
        status = str(item.get("status"))
        if result.seen.get(key) != status:
            result.seen[key] = status
            progress(item)


# -- the report -------------------------------------------------------------------------------------
def activity_summary(item: Mapping[str, Any]) -> dict[str, Any]:
    """One activity run as ``adf run`` reports it (the fixed contract ``flow`` reads)."""
    error = item.get("error")
    has_error = isinstance(error, Mapping) and (error.get("errorCode") or error.get("message"))
    return {
        "activityName": item.get("activityName"),
        "activityType": item.get("activityType"),
        "status": item.get("status"),
        "pipelineRunId": item.get("pipelineRunId"),
        "activityRunId": item.get("activityRunId"),
        "error": {k: error.get(k, "") for k in ("errorCode", "message", "failureType", "target")}
        if has_error and isinstance(error, Mapping) else None,
        "input": item.get("input"),
        "output": item.get("output"),
    }


def run_summary(run: Mapping[str, Any], factory: str, activities: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runId": run.get("runId"),
        "pipeline": run.get("pipelineName"),
        "factory": factory,
        "status": run.get("status"),
        "message": run.get("message") or "",
        "runStart": run.get("runStart"),
        "runEnd": run.get("runEnd"),
        "durationInMs": run.get("durationInMs"),
        "parameters": run.get("parameters") or {},
        "activities": [activity_summary(a) for a in activities],
    }


def describe_run(api: FactoryApi, calls: ArmCalls, ref: FactoryRef, run: Mapping[str, Any],
                 *, max_children: int = 200) -> dict[str, Any]:
    """The run with its activity runs and, flattened, every ExecutePipeline child run (and theirs)."""
    top = run_summary(run, ref.name, query_activity_runs(api, calls, ref, run))
    children: list[dict[str, Any]] = []
    todo = _child_ids(top["activities"])
    seen: set[str] = {str(run.get("runId"))}
    while todo and len(children) < max_children:
        child_id = todo.pop(0)
        if child_id in seen:
            continue
        seen.add(child_id)
        child = calls(f"get pipeline run {child_id}", functools.partial(api.get_run, ref, child_id))
        summary = run_summary(child, ref.name, query_activity_runs(api, calls, ref, child))
        children.append(summary)
        todo.extend(_child_ids(summary["activities"]))
    top["childRuns"] = children
    return top


def _child_ids(activities: list[dict[str, Any]]) -> list[str]:
    out = []
    for item in activities:
        output = item.get("output")
        if item.get("activityType") == "ExecutePipeline" and isinstance(output, Mapping):
            child = output.get("pipelineRunId")
            if isinstance(child, str) and child:
                out.append(child)
    return out


def failing_activities(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Failed activities of the run and its children, innermost (most specific) first."""
    rows = [a for r in [*report.get("childRuns", []), report] for a in r.get("activities", [])
            if a.get("status") == "Failed" and a.get("error")]
    return rows


def find_activities(report: Mapping[str, Any], *, name: str | None = None,
                    activity_type: str | None = None) -> list[dict[str, Any]]:
    """Activity runs of a ``describe_run`` report and its child runs matching a name and/or type.

    E.g. the SubmitJob WebActivities of ``pl_train_and_validate``: their outputs name the Azure ML jobs the
    run submitted, which is how a verifier finds them.
    """
    return [dict(a) for run in [report, *report.get("childRuns", [])] for a in run.get("activities", [])
            if (name is None or a.get("activityName") == name)
            and (activity_type is None or a.get("activityType") == activity_type)]
