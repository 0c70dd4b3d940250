"""Control activities of the local runner: IfCondition, Switch, ForEach, Until, ExecutePipeline.

A container fails when its inner activities fail by ADF's pipeline rule (see ``runner.scope_outcome``),
with ADF's message "Activity failed because an inner activity failed; Inner activity name: ...".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cicd_tools.adf.activities import Implementation, Invocation
from cicd_tools.adf.run_model import FAILED, ActivityFailed, ActivityRun, ScopeOutcome
from cicd_tools.adf.timespan import timespan_seconds

UNTIL_DEFAULT_TIMEOUT = 7 * 24 * 3600.0  # ADF: TimeSpan.FromDays(7)
UNTIL_MAX_ITERATIONS = 100_000  # a local safety net: ADF has none, but a loop that never waits would spin
FOREACH_DEFAULT_BATCH = 20  # ADF's default batchCount; its maximum is 50
FOREACH_MAX_BATCH = 50  # a larger batchCount never gets here: run_rules.validate refuses the pipeline


def _raise_if_failed(outcome: ScopeOutcome) -> None:
    if outcome.status == FAILED:
        error = outcome.error()
        raise ActivityFailed(str(error["errorCode"]), str(error["message"]))


def _activities(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def _boolean(inv: Invocation, value: Any, what: str) -> bool:
    verdict = inv.evaluate(value)
    if not isinstance(verdict, bool):
        raise ActivityFailed("InvalidTemplate", f"The {what} expression must evaluate to a boolean, got {verdict!r}")
    return verdict


def if_condition(inv: Invocation) -> Any:
    """IfCondition: run ifTrueActivities or ifFalseActivities."""
    tp = inv.type_properties
    verdict = _boolean(inv, tp.get("expression"), "IfCondition")
    inv.input = {"expression": verdict}
    branch = _activities(tp.get("ifTrueActivities" if verdict else "ifFalseActivities"))
    _raise_if_failed(inv.execution.run_scope(branch, inv.ctx, inv.inner, inv.iteration))
    return {}


def switch(inv: Invocation) -> Any:
    """Switch: run the case whose value equals ``on`` (as a string), else defaultActivities."""
    tp = inv.type_properties
    on = inv.evaluate(tp.get("on"))
    if not isinstance(on, str):
        raise ActivityFailed("InvalidTemplate", f"The Switch 'on' expression must evaluate to a string, got {on!r}")
    inv.input = {"on": on}
    chosen = _activities(tp.get("defaultActivities"))
    for case in _activities(tp.get("cases")):
        if isinstance(case, Mapping) and str(case.get("value")) == on:
            chosen = _activities(case.get("activities"))
            break
    _raise_if_failed(inv.execution.run_scope(chosen, inv.ctx, inv.inner, inv.iteration))
    return {}


def for_each(inv: Invocation) -> Any:
    """ForEach: every item runs (a failed iteration does not stop the others); parallel up to batchCount."""
    tp = inv.type_properties
    items = inv.evaluate(tp.get("items"))
    if not isinstance(items, list):
        raise ActivityFailed("InvalidTemplate", f"ForEach items must evaluate to an array, got {type(items).__name__}")
    inv.input = {"items": items}
    body = _activities(tp.get("activities"))

    def iteration(index: int, item: Any) -> tuple[ScopeOutcome, list[ActivityRun]]:
        # Each iteration reads its own item() and its own inner outputs; variables stay pipeline-wide.
        records: list[ActivityRun] = []
        ctx = inv.child_context(item, push_item=True)
        return inv.execution.run_scope(body, ctx, records, index), records

    batch = tp.get("batchCount")
    workers = min(int(batch) if isinstance(batch, int) and batch > 0 else FOREACH_DEFAULT_BATCH, FOREACH_MAX_BATCH)
    if tp.get("isSequential") is True or workers == 1 or len(items) <= 1:
        results = [iteration(i, item) for i, item in enumerate(items)]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="foreach") as pool:
            futures = [pool.submit(iteration, i, item) for i, item in enumerate(items)]
            results = [future.result() for future in futures]
    for _, records in results:  # listed in item order whatever order they ran in
        inv.inner.extend(records)
    for outcome, _ in results:
        _raise_if_failed(outcome)
    return {}


def until(inv: Invocation) -> Any:
    """Until: run the activities, then evaluate the expression; stop when true, fail at the timeout."""
    tp = inv.type_properties
    timeout = timespan_seconds(inv.evaluate(tp.get("timeout")), UNTIL_DEFAULT_TIMEOUT)
    body = _activities(tp.get("activities"))
    execution = inv.execution
    started = execution.clock()
    for index in range(UNTIL_MAX_ITERATIONS):
        _raise_if_failed(execution.run_scope(body, inv.ctx, inv.inner, index))
        if _boolean(inv, tp.get("expression"), "Until"):
            inv.input = {"iterations": index + 1}
            return {}
        if (execution.clock() - started).total_seconds() >= timeout:
            raise ActivityFailed(
                "ActivityTimedOut",
                f"Until '{inv.name}' reached its timeout ({tp.get('timeout') or '7.00:00:00'}) after"
                f" {index + 1} iterations before its expression became true",
            )
    raise ActivityFailed(
        "UntilIterationLimit", f"Until '{inv.name}' ran {UNTIL_MAX_ITERATIONS} iterations (local runner safety limit)"
    )


def execute_pipeline(inv: Invocation) -> Any:
    """ExecutePipeline: run the child pipeline; with waitOnCompletion its failure fails this activity."""
    tp = inv.type_properties
    ref = tp.get("pipeline")
    name = ref.get("referenceName") if isinstance(ref, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ActivityFailed("InvalidPipelineReference", "ExecutePipeline names no pipeline")
    parameters = inv.evaluate(tp.get("parameters") or {})
    if not isinstance(parameters, Mapping):
        raise ActivityFailed("InvalidTemplate", "ExecutePipeline parameters must be an object")
    inv.input = {"pipeline": {"referenceName": name, "type": "PipelineReference"}, "parameters": dict(parameters)}
    child = inv.execution.run_child(name, parameters)
    output: dict[str, Any] = {"pipelineName": name, "pipelineRunId": child.run_id}
    inv.partial_output = output
    inv.execution.check_cancelled()  # a recursive cancel ended the child: this activity is Cancelled too
    # waitOnCompletion defaults to false in the JSON (the designer writes true explicitly).
    if tp.get("waitOnCompletion") is not True:
        return output
    if child.output is not None:
        output["pipelineReturnValue"] = child.output
    if child.status == "Cancelled":
        raise ActivityFailed("PipelineRunCancelled", f"The child pipeline run {child.run_id} was cancelled.",
                             output=output)
    if not child.succeeded:
        code = str(child.failure.error.get("errorCode", "")) if child.failure and child.failure.error else ""
        raise ActivityFailed(code or "PipelineRunFailed", child.message, output=output)
    return output


CONTROL_ACTIVITIES: dict[str, Implementation] = {
    "ifcondition": if_condition,
    "switch": switch,
    "foreach": for_each,
    "until": until,
    "executepipeline": execute_pipeline,
}
