"""Results of a local pipeline run, shaped like ADF's ``pipelineruns`` / ``queryActivityruns`` answers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

Status = Literal["Succeeded", "Failed", "Skipped", "InProgress", "Cancelled"]
RunStatus = Literal["Succeeded", "Failed", "Cancelled"]
Clock = Callable[[], datetime]  # tz-aware UTC "now"
Sleep = Callable[[float], None]

SUCCEEDED: Status = "Succeeded"
FAILED: Status = "Failed"
SKIPPED: Status = "Skipped"
IN_PROGRESS: Status = "InProgress"
CANCELLED: Literal["Cancelled"] = "Cancelled"
CANCELLED_MESSAGE = "The pipeline run was cancelled."


def iso(moment: datetime) -> str:
    """ADF's timestamp format: ``2018-06-16T00:37:49.4804925Z`` (7 fractional digits, Z)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


LOCAL_EVALUATION_LIMIT = "LocalEvaluationLimit"  # an expression past the evaluation budget (expressions.budget)
LOCAL_RUN_LIMIT = "LocalRunLimit"
# The local runner's safety limits (docs/limits.md): a run that hits one is refused (exit 2), not a failed run.
LOCAL_LIMIT_CODES = frozenset({LOCAL_EVALUATION_LIMIT, LOCAL_RUN_LIMIT, "UntilIterationLimit"})
_CONTAINERS = frozenset({"until", "foreach", "ifcondition", "switch", "executepipeline"})


class ActivityFailed(Exception):
    """Raised by an activity implementation: the activity ends Failed with this error."""

    def __init__(self, error_code: str, message: str, *, failure_type: str = "UserError", output: Any = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.failure_type = failure_type
        self.output = output  # what the activity produced before failing (WebActivity: the error response)


class RunCancelled(Exception):
    """Raised inside a run when its cancel event is set: the activity in flight ends Cancelled, nothing else starts."""


@dataclass(frozen=True)
class ActivityRun:
    """One activity run, as ``queryActivityruns`` lists it."""

    activity_name: str
    activity_type: str
    status: Status
    pipeline_name: str
    pipeline_run_id: str
    activity_run_id: str
    start: datetime
    end: datetime
    input: Any = None
    output: Any = None
    error: Mapping[str, Any] | None = None  # {"errorCode", "message", "failureType", "target"}
    retry_attempt: int | None = None
    iteration: int | None = None  # ForEach/Until iteration (0-based) the run belongs to; not an ADF field

    @property
    def duration_ms(self) -> int:
        return int((self.end - self.start).total_seconds() * 1000)

    def to_dict(self) -> dict[str, Any]:
        """The ADF ``ActivityRun`` JSON (error fields are empty strings when it did not fail, as ADF does)."""
        error = (
            dict(self.error)
            if self.error
            else {
                "errorCode": "",
                "message": "",
                "failureType": "",
                "target": self.activity_name,
            }
        )
        return {
            "activityName": self.activity_name,
            "activityType": self.activity_type,
            "activityRunId": self.activity_run_id,
            "pipelineName": self.pipeline_name,
            "pipelineRunId": self.pipeline_run_id,
            "status": self.status,
            "activityRunStart": iso(self.start),
            "activityRunEnd": iso(self.end),
            "durationInMs": self.duration_ms,
            "retryAttempt": self.retry_attempt,
            "input": self.input if self.input is not None else {},
            "output": self.output if self.output is not None else {},
            "error": error,
            "userProperties": {},
            "linkedServiceName": "",
        }


@dataclass(frozen=True)
class PipelineRunResult:
    """A finished local run: the pipeline run fields ADF reports, every activity run, and child runs."""

    run_id: str
    pipeline_name: str
    status: RunStatus
    message: str
    parameters: Mapping[str, Any]
    start: datetime
    end: datetime
    activity_runs: tuple[ActivityRun, ...]
    output: Any = None  # the pipeline return value (SetVariable pipelineReturnValue), if any
    child_runs: tuple[PipelineRunResult, ...] = ()
    invoked_by: Mapping[str, Any] = field(default_factory=dict)
    failure: ActivityRun | None = None  # the failed activity that decided a Failed status

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def duration_ms(self) -> int:
        return int((self.end - self.start).total_seconds() * 1000)

    def activity(self, name: str) -> ActivityRun:
        """The last run of the activity called ``name``. Raises: KeyError when it never ran."""
        for run in reversed(self.activity_runs):
            if run.activity_name == name:
                return run
        raise KeyError(name)

    def statuses(self) -> dict[str, str]:
        """Activity name -> status of its last run (Skipped activities included)."""
        return {run.activity_name: run.status for run in self.activity_runs}

    def query_activity_runs(self) -> list[dict[str, Any]]:
        """The ``queryActivityruns`` ``value`` list: ADF lists activities that ran, not skipped ones."""
        return [run.to_dict() for run in self.activity_runs if run.status != SKIPPED]

    def all_runs(self) -> list[PipelineRunResult]:
        """This run and every descendant run (ExecutePipeline children, their children...), depth first."""
        out: list[PipelineRunResult] = [self]
        for child in self.child_runs:
            out.extend(child.all_runs())
        return out

    def limit_breach(self) -> ActivityRun | None:
        """The activity run (this run's or a descendant's) that failed on a local safety limit: the one that hit
        it rather than the Until, ForEach or ExecutePipeline around it, which fail with the same code."""
        found = [activity for run in self.all_runs() for activity in run.activity_runs
                 if activity.error and activity.error.get("errorCode") in LOCAL_LIMIT_CODES]
        for activity in found:
            if activity.activity_type.lower() not in _CONTAINERS:
                return activity
        return found[0] if found else None

    def to_dict(self) -> dict[str, Any]:
        """The pipeline run (``PipelineRun`` fields) with every activity run and the child runs."""
        return {
            "runId": self.run_id,
            "runGroupId": self.run_id,
            "isLatest": True,
            "pipelineName": self.pipeline_name,
            "parameters": {k: v if isinstance(v, str) else _json_text(v) for k, v in self.parameters.items()},
            "invokedBy": dict(self.invoked_by),
            "runStart": iso(self.start),
            "runEnd": iso(self.end),
            "durationInMs": self.duration_ms,
            "status": self.status,
            "message": self.message,
            "output": self.output,
            "activityRuns": [run.to_dict() for run in self.activity_runs],
            "childRuns": [child.to_dict() for child in self.child_runs],
        }


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


class RunHooks(Protocol):
    """What a host (the sandbox's Data Factory) learns about child runs, so it can list and cancel them."""

    def child_started(
        self, run_id: str, pipeline_name: str, parameters: Mapping[str, Any], invoked_by: Mapping[str, Any]
    ) -> threading.Event | None:
        """A child run starts; the event returned (if any) cancels it."""
        ...

    def child_finished(self, result: PipelineRunResult) -> None: ...


@dataclass
class ScopeOutcome:
    """How one list of activities ended (the pipeline, or a container's inner activities)."""

    status: Literal["Succeeded", "Failed"]
    failed: ActivityRun | None = None  # the failure that decided it, for the error message

    def error(self) -> dict[str, Any]:
        """ADF's message for a container whose inner activity failed."""
        inner = self.failed
        if inner is None or not inner.error:
            return {"errorCode": "InnerActivityFailed", "message": "an inner activity failed"}
        return {
            "errorCode": inner.error.get("errorCode", ""),
            "message": (
                f"Activity failed because an inner activity failed; Inner activity name: {inner.activity_name},"
                f" Error: {inner.error.get('message', '')}"
            ),
        }


MAX_ACTIVITY_RUNS = 200_000  # activity runs in one local run, child pipelines included (nested loops multiply)


class RunBudget:
    """The activity runs one local run may still start (shared with its child pipelines and ForEach threads)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = MAX_ACTIVITY_RUNS if limit is None else limit
        self.used = 0
        self._lock = threading.Lock()

    def spend(self, name: str) -> None:
        """Count one activity run. Raises: ActivityFailed (LocalRunLimit) past the limit."""
        with self._lock:
            self.used += 1
            if self.used > self.limit:
                raise ActivityFailed(LOCAL_RUN_LIMIT, f"activity '{name}' would be activity run {self.used:,} of"
                                     f" this local run; the local runner's limit is {self.limit:,}")
