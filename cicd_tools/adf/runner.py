"""Run an ADF pipeline locally, with ADF's dependency and failure semantics (``run_rules``).

* Independent activities run one after another in document order (outputs are the same; timing is not);
  a non-sequential ForEach runs its iterations on up to ``batchCount`` threads.
* Time goes through the injected ``clock`` / ``sleep``: Wait, retries, Until timeouts, async polling.
* Cancellation (the sandbox's ``cancel`` API): when ``cancel`` (a ``threading.Event``) is set, sleeps end at
  once, the activity in flight ends ``Cancelled``, nothing new starts and the run ends ``Cancelled``. Child
  runs get their own event from ``RunHooks.child_started``, so a non-recursive cancel leaves them running.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cicd_tools.adf.activities import SIMPLE_ACTIVITIES, Implementation, Invocation
from cicd_tools.adf.activities_control import CONTROL_ACTIVITIES
from cicd_tools.adf.expressions import ActivityResult, EvalContext
from cicd_tools.adf.loader import Factory, PipelineDoc
from cicd_tools.adf.run_model import (
    CANCELLED,
    CANCELLED_MESSAGE,
    FAILED,
    IN_PROGRESS,
    SKIPPED,
    SUCCEEDED,
    ActivityFailed,
    ActivityRun,
    Clock,
    PipelineRunResult,
    RunBudget,
    RunCancelled,
    RunHooks,
    RunStatus,
    ScopeOutcome,
    Sleep,
    Status,
    iso,
)
from cicd_tools.adf.run_rules import (
    PipelineInvalid,
    condition_met,
    depends_on,
    inactive_status,
    initial_value,
    resolve_parameters,
    retry_policy,
    scope_outcome,
    validate,
)
from cicd_tools.adf.web import RequestsWebCaller, WebCaller

__all__ = ["PipelineExecution", "PipelineInvalid", "RunHooks", "run_pipeline"]

log = logging.getLogger(__name__)

MAX_DEPTH = 20  # nested ExecutePipeline levels before the runner refuses (a pipeline calling itself)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PipelineExecution:
    """One pipeline run in progress (implements ``activities.Execution``)."""

    def __init__(
        self,
        resource: Mapping[str, Any],
        *,
        name: str,
        parameters: Mapping[str, Any],
        factory: Factory | None,
        http: WebCaller,
        clock: Clock,
        sleep: Sleep,
        run_id: str,
        depth: int = 0,
        invoked_by: Mapping[str, Any] | None = None,
        new_id: Callable[[], str] | None = None,
        implementations: Mapping[str, Implementation] | None = None,
        observer: Callable[[ActivityRun], None] | None = None,
        cancel: threading.Event | None = None,
        hooks: RunHooks | None = None,
        budget: RunBudget | None = None,
    ) -> None:
        self.resource = resource
        self.budget = budget or RunBudget()
        self.pipeline_name = name
        self.parameters = dict(parameters)
        self.factory = factory
        self.http = http
        self.clock = clock
        self.raw_sleep = sleep
        self.cancel = cancel
        self.hooks = hooks
        self.run_id = run_id
        self.depth = depth
        self.invoked_by = dict(invoked_by or {"name": "Manual", "invokedByType": "Manual"})
        self.new_id = new_id or (lambda: str(uuid.uuid4()))
        self.observer = observer
        self.implementations = {
            **SIMPLE_ACTIVITIES,
            **CONTROL_ACTIVITIES,
            **{k.lower(): v for k, v in (implementations or {}).items()},
        }
        self.return_value: Any = None
        self.child_runs: list[PipelineRunResult] = []
        self.variables_lock = threading.Lock()
        self._lock = threading.Lock()

    @property
    def properties(self) -> Mapping[str, Any]:
        props = self.resource.get("properties")
        return props if isinstance(props, Mapping) else {}

    def sleep(self, seconds: float) -> None:
        """Sleep, ending early when the run is cancelled. Raises: RunCancelled."""
        self.check_cancelled()
        if self.cancel is not None:
            self.cancel.wait(max(0.0, seconds))  # wakes at once on cancel; real time, whatever sleep was given
        else:
            self.raw_sleep(seconds)
        self.check_cancelled()

    def check_cancelled(self) -> None:
        """Raises: RunCancelled when the run's cancel event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise RunCancelled(self.run_id)

    def _context(self, start: datetime) -> EvalContext:
        declared = self.properties.get("variables")
        variables: dict[str, Any] = {}
        if isinstance(declared, Mapping):
            for name, spec in declared.items():
                variables[name] = initial_value(spec)
        system: dict[str, Any] = {
            "RunId": self.run_id,
            "Pipeline": self.pipeline_name,
            "GroupId": self.run_id,
            "DataFactory": self.factory.root.name if self.factory and self.factory.root else "local",
            "TriggerType": "Manual",
            "TriggerId": self.run_id,
            "TriggerName": "Manual",
            "TriggerTime": iso(start),
        }
        if self.invoked_by.get("pipelineName"):
            system["TriggeredByPipelineName"] = self.invoked_by["pipelineName"]
            system["TriggeredByPipelineRunId"] = self.invoked_by.get("pipelineRunId")
        return EvalContext(
            parameters=self.parameters,
            global_parameters=self.factory.global_parameter_values() if self.factory else {},
            variables=variables,
            system=system,
            now=self.clock,
        )

    def run(self) -> PipelineRunResult:
        """Run every activity and decide the pipeline's status."""
        start = self.clock()
        records: list[ActivityRun] = []
        activities = self.properties.get("activities")
        message = ""
        try:
            self.check_cancelled()
            outcome = self.run_scope(
                activities if isinstance(activities, list) else [], self._context(start), records
            )
            status: RunStatus = outcome.status
            failure = outcome.failed
        except RunCancelled:
            status, failure, message = CANCELLED, None, CANCELLED_MESSAGE
        if status == FAILED and failure is not None and failure.error:
            message = f"Operation on target {failure.activity_name} failed: {failure.error['message']}"
        log.info("pipeline %s run %s: %s", self.pipeline_name, self.run_id, status)
        return PipelineRunResult(
            run_id=self.run_id,
            pipeline_name=self.pipeline_name,
            status=status,
            message=message,
            parameters=self.parameters,
            start=start,
            end=self.clock(),
            activity_runs=tuple(records),
            output=self.return_value,
            child_runs=tuple(self.child_runs),
            invoked_by=self.invoked_by,
            failure=failure,
        )

    def run_scope(
        self, activities: Sequence[Any], ctx: EvalContext, records: list[ActivityRun], iteration: int | None = None
    ) -> ScopeOutcome:
        """Run one list of activities in dependency order; returns how the list ended."""
        acts = [a for a in activities if isinstance(a, Mapping)]
        names = {str(a.get("name", "")) for a in acts}
        status: dict[str, Status] = {}
        runs: dict[str, ActivityRun] = {}
        pending = list(acts)
        while pending:
            ready = [a for a in pending if all(d in status or d not in names for d, _ in depends_on(a))]
            if not ready:  # validate() refuses cycles; this guards activities built by hand
                raise PipelineInvalid("dependsOn cycle among: " + ", ".join(str(a.get("name")) for a in pending))
            for obj in ready:
                self.check_cancelled()  # nothing new starts once the run is cancelled
                pending.remove(obj)
                name = str(obj.get("name", ""))
                runs[name] = self._run_or_skip(obj, ctx, records, iteration, status, names)
                status[name] = runs[name].status
        return scope_outcome(acts, status, runs)

    def _run_or_skip(
        self,
        obj: Mapping[str, Any],
        ctx: EvalContext,
        records: list[ActivityRun],
        iteration: int | None,
        status: Mapping[str, Status],
        names: set[str],
    ) -> ActivityRun:
        deps = [(d, conds) for d, conds in depends_on(obj) if d in names]
        if all(any(condition_met(status[d], c) for c in conds) for d, conds in deps):
            if str(obj.get("state", "")).lower() == "inactive":
                return self._record(obj, records, iteration, inactive_status(obj))
            return self.run_activity(obj, ctx, records, iteration)
        return self._record(obj, records, iteration, SKIPPED)

    def _record(
        self, obj: Mapping[str, Any], records: list[ActivityRun], iteration: int | None, status: Status
    ) -> ActivityRun:
        now = self.clock()
        name = str(obj.get("name", ""))
        error = (
            {
                "errorCode": "ActivityInactive",
                "message": "marked Failed while inactive",
                "failureType": "UserError",
                "target": name,
            }
            if status == FAILED
            else None
        )
        run = ActivityRun(
            activity_name=name,
            activity_type=str(obj.get("type", "")),
            status=status,
            pipeline_name=self.pipeline_name,
            pipeline_run_id=self.run_id,
            activity_run_id=self.new_id(),
            start=now,
            end=now,
            error=error,
            iteration=iteration,
        )
        records.append(run)
        self._observe(run)
        return run

    def _observe(self, run: ActivityRun) -> None:
        if self.observer is not None:
            self.observer(run)

    def run_activity(
        self, obj: Mapping[str, Any], ctx: EvalContext, records: list[ActivityRun], iteration: int | None = None
    ) -> ActivityRun:
        """Run one activity (with its retry policy), record it, and publish its output to ``ctx``."""
        name, kind = str(obj.get("name", "")), str(obj.get("type", ""))
        impl = self.implementations.get(kind.lower())
        retries, interval = retry_policy(obj, ctx)
        attempt = 0
        while True:
            start = self.clock()
            run_id = self.new_id()
            inv = Invocation(obj=obj, ctx=ctx, execution=self, iteration=iteration)
            output: Any = None
            error: dict[str, Any] | None = None
            self._observe(
                ActivityRun(name, kind, IN_PROGRESS, self.pipeline_name, self.run_id, run_id, start, start,
                            iteration=iteration)
            )
            try:
                self.budget.spend(name)
                if impl is None:
                    supported = ", ".join(sorted(self.implementations))
                    raise ActivityFailed(
                        "UnsupportedActivity",
                        f"activity type '{kind}' is not supported by the local runner (supported: {supported})",
                    )
                output = impl(inv)
            except ActivityFailed as failure:
                output = failure.output
                error = {
                    "errorCode": failure.error_code,
                    "message": failure.message,
                    "failureType": failure.failure_type,
                    "target": name,
                }
            except RunCancelled:
                run = ActivityRun(name, kind, CANCELLED, self.pipeline_name, self.run_id, run_id, start,
                                  self.clock(), input=inv.input, output=inv.partial_output, iteration=iteration)
                records.append(run)
                records.extend(inv.inner)
                self._observe(run)
                raise
            except PipelineInvalid:
                raise
            except Exception as exc:  # a bug in an implementation: fail this activity, keep the run going
                log.exception("activity %s (%s) raised", name, kind)
                error = {
                    "errorCode": "InternalServerError",
                    "message": f"the local runner failed on this activity: {type(exc).__name__}: {exc}",
                    "failureType": "SystemError",
                    "target": name,
                }
            run = ActivityRun(
                activity_name=name,
                activity_type=kind,
                status=FAILED if error else SUCCEEDED,
                pipeline_name=self.pipeline_name,
                pipeline_run_id=self.run_id,
                activity_run_id=run_id,
                start=start,
                end=self.clock(),
                input=inv.input,
                output=output,
                error=error,
                retry_attempt=attempt if retries else None,
                iteration=iteration,
            )
            records.append(run)
            records.extend(inv.inner)
            self._observe(run)
            if error is None or impl is None or attempt >= retries:
                break
            attempt += 1
            log.info(
                "activity %s failed (%s); retry %d of %d in %gs", name, error["errorCode"], attempt, retries, interval
            )
            self.sleep(interval)
        ctx.activity_outputs[name] = ActivityResult(
            output=output if output is not None else {}, status=run.status, error=error
        )
        return run

    def run_child(self, name: str, parameters: Mapping[str, Any]) -> PipelineRunResult:
        """Run a pipeline of the factory for ExecutePipeline. Raises: ActivityFailed when it cannot start."""
        child = self.factory.pipelines.get(name) if self.factory else None
        if child is None:
            raise ActivityFailed("PipelineNotFound", f"pipeline '{name}' is not in the factory")
        if self.depth + 1 >= MAX_DEPTH:
            raise ActivityFailed("ExecutePipelineDepth", f"more than {MAX_DEPTH} nested ExecutePipeline levels")
        try:
            validate(child.resource)
            values = resolve_parameters(child.resource, parameters)
        except PipelineInvalid as err:
            raise ActivityFailed("InvalidPipeline", f"pipeline '{name}': {err.message}") from None
        child_id = self.new_id()
        invoked_by = {
            "name": self.pipeline_name,
            "invokedByType": "PipelineActivity",
            "pipelineName": self.pipeline_name,
            "pipelineRunId": self.run_id,
        }
        cancel = self.hooks.child_started(child_id, name, values, invoked_by) if self.hooks else None
        execution = PipelineExecution(
            child.resource,
            name=name,
            parameters=values,
            factory=self.factory,
            http=self.http,
            clock=self.clock,
            sleep=self.raw_sleep,
            run_id=child_id,
            depth=self.depth + 1,
            new_id=self.new_id,
            implementations=self.implementations,
            observer=self.observer,
            invoked_by=invoked_by,
            cancel=cancel if cancel is not None else (None if self.hooks else self.cancel),
            hooks=self.hooks,
            budget=self.budget,
        )
        result = execution.run()
        with self._lock:
            self.child_runs.append(result)
        if self.hooks is not None:
            self.hooks.child_finished(result)
        return result


def run_pipeline(
    pipeline: PipelineDoc | Mapping[str, Any],
    *,
    parameters: Mapping[str, Any] | None = None,
    factory: Factory | None = None,
    http: WebCaller | None = None,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
    run_id: str | None = None,
    new_id: Callable[[], str] | None = None,
    implementations: Mapping[str, Implementation] | None = None,
    observer: Callable[[ActivityRun], None] | None = None,
    cancel: threading.Event | None = None,
    hooks: RunHooks | None = None,
) -> PipelineRunResult:
    """Run a pipeline resource locally. Raises: PipelineInvalid when ADF would refuse to run it.

    ``implementations`` adds or replaces activity types (``{"Copy": fake_copy}``): a callable taking an
    ``activities.Invocation`` and returning the output, or raising ``ActivityFailed``. ``observer`` sees
    every activity run as it starts (status ``InProgress``) and as it ends, under the same activity run id
    (child pipelines' too; from ForEach threads too), for live progress. Setting ``cancel`` cancels the run.
    """
    resource = pipeline.resource if isinstance(pipeline, PipelineDoc) else pipeline
    name = pipeline.name if isinstance(pipeline, PipelineDoc) else str(resource.get("name", "pipeline"))
    validate(resource)
    execution = PipelineExecution(
        resource,
        name=name,
        parameters=resolve_parameters(resource, parameters or {}),
        factory=factory,
        http=http or RequestsWebCaller(),
        clock=clock or _utc_now,
        sleep=sleep or time.sleep,
        run_id=run_id or str(uuid.uuid4()),
        new_id=new_id,
        implementations=implementations,
        observer=observer,
        cancel=cancel,
        hooks=hooks,
    )
    return execution.run()

