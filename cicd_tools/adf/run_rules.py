"""ADF's run semantics that need no I/O: dependency conditions, the pipeline outcome rule, validation.

* An activity runs when every ``dependsOn`` entry meets one of its conditions (Succeeded, Failed, Skipped,
  Completed = Succeeded or Failed); otherwise it is Skipped.
* A pipeline (or a container's inner activities) succeeds if and only if every *leaf* succeeded, where a
  skipped leaf is judged by its parents instead (learn.microsoft.com "Pipeline failure and error
  handling"): Try-Catch succeeds, Do-If-Else fails, Do-If-Skip-Else succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cicd_tools.adf.expressions import EvalContext, evaluate_json, render_string
from cicd_tools.adf.expressions.types import FunctionFailure
from cicd_tools.adf.lint_model import build_model, find_cycles
from cicd_tools.adf.run_model import FAILED, SKIPPED, SUCCEEDED, ActivityRun, ScopeOutcome, Status
from cicd_tools.support.errors import UsageError


class PipelineInvalid(UsageError):
    """The pipeline cannot run: a dependsOn names no activity of its scope, a cycle, a missing parameter."""

    default_hint = "Run `cicd-tools adf lint` on the pipeline and fix the errors it reports."


def depends_on(obj: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    """``(activity name, conditions)`` of every well-formed ``dependsOn`` entry of an activity."""
    deps = obj.get("dependsOn")
    return [
        (dep["activity"], dep.get("dependencyConditions") or [])
        for dep in (deps if isinstance(deps, list) else [])
        if isinstance(dep, Mapping) and isinstance(dep.get("activity"), str)
    ]


def condition_met(status: Status, condition: Any) -> bool:
    """Whether an upstream status meets one dependency condition (Completed: Succeeded or Failed)."""
    return condition == status or (condition == "Completed" and status in (SUCCEEDED, FAILED))


# ForEach batchCount: "Integer (maximum 50) ... Default is 20" (learn.microsoft.com control-flow-for-each-activity;
# REST spec ForEachActivityTypeProperties.batchCount "maximum": 50); "This number must be between 1 and 50"
# (the docs' author, MicrosoftDocs/azure-docs#58758). The service refuses the pipeline, it does not clamp.
FOREACH_MAX_BATCH = 50


def batch_count_problem(type_properties: Mapping[str, Any]) -> str | None:
    """Why a ForEach's ``batchCount`` is one ADF refuses, or None (absent means the default, 20)."""
    if "batchCount" not in type_properties:
        return None
    value = type_properties["batchCount"]
    if isinstance(value, bool) or not isinstance(value, int):
        return f"batchCount must be an integer between 1 and {FOREACH_MAX_BATCH}, got {json.dumps(value)}"
    if not 1 <= value <= FOREACH_MAX_BATCH:
        return f"batchCount must be between 1 and {FOREACH_MAX_BATCH} (the ForEach maximum), got {value}"
    return None


def validate(resource: Mapping[str, Any]) -> None:
    """Refuse what ADF would not publish. Raises: PipelineInvalid."""
    props = resource.get("properties") if isinstance(resource.get("properties"), Mapping) else {}
    model = build_model(props.get("activities") if props else None, "$.properties.activities")
    for scope, nodes in model.scopes.items():
        names = model.scope_index(scope)
        for node in nodes:
            for _, dep, _ in node.depends_on():
                if dep not in names:
                    raise PipelineInvalid(f"activity '{node.name}' depends on '{dep}', which is not in its scope")
        for cycle in find_cycles(nodes):
            raise PipelineInvalid(f"dependsOn cycle: {' -> '.join(cycle)}")
        for node in nodes:
            problem = batch_count_problem(node.type_properties) if node.type.lower() == "foreach" else None
            if problem is not None:
                raise PipelineInvalid(f"ForEach activity '{node.name}': {problem}")


def resolve_parameters(resource: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Declared defaults overlaid with the given values. Raises: PipelineInvalid for a missing one."""
    props = resource.get("properties")
    declared = props.get("parameters") if isinstance(props, Mapping) else None
    if not isinstance(declared, Mapping):
        declared = {}
    values: dict[str, Any] = {}
    missing = []
    for name, spec in declared.items():
        kind = str(spec.get("type", "")) if isinstance(spec, Mapping) else ""
        if name in given:
            values[name] = coerce_parameter(given[name], kind)
        elif isinstance(spec, Mapping) and "defaultValue" in spec:
            values[name] = coerce_parameter(spec["defaultValue"], kind)
        else:
            missing.append(name)
    if missing:
        raise PipelineInvalid(
            f"no value for required parameter(s): {', '.join(missing)}", hint="Pass them with --param NAME=VALUE."
        )
    values.update({k: v for k, v in given.items() if k not in values})
    return values


def coerce_parameter(value: Any, declared_type: str) -> Any:
    """A parameter value in its declared type, as createRun converts it (``--param n=1`` for a String is "1").

    Values that do not convert are passed as they are: the expressions that read them report the mismatch.
    """
    kind = declared_type.lower()
    if kind in ("string", "securestring") and not isinstance(value, str) and value is not None:
        try:
            return render_string(value)
        except FunctionFailure as exc:
            raise PipelineInvalid(f"a {declared_type} parameter value: {exc}") from None
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind == "int":
                return int(text)
            if kind == "float":
                return float(text)
            if kind == "bool" and text.lower() in ("true", "false"):
                return text.lower() == "true"
            if kind in ("array", "object"):
                parsed = json.loads(text)
                return parsed if isinstance(parsed, list if kind == "array" else dict) else value
        except (ValueError, RecursionError):
            return value
    return value


def scope_outcome(
    activities: Sequence[Mapping[str, Any]], status: Mapping[str, Status], runs: Mapping[str, ActivityRun]
) -> ScopeOutcome:
    """ADF's rule: success iff every leaf succeeded; a skipped leaf is judged by its parents instead."""
    names = {str(a.get("name", "")): a for a in activities}
    depended = {dep for a in activities for dep, _ in depends_on(a) if dep in names}
    failures: list[str] = []

    def judge(name: str, seen: frozenset[str]) -> bool:
        state = status.get(name, SKIPPED)
        if state == SUCCEEDED:
            return True
        if state == FAILED:
            failures.append(name)
            return False
        parents = [dep for dep, _ in depends_on(names[name]) if dep in names and dep not in seen]
        return all([judge(p, seen | {p}) for p in parents])  # a list: judge every parent, collect failures

    verdicts = [judge(name, frozenset({name})) for name in names if name not in depended]
    if all(verdicts):
        return ScopeOutcome("Succeeded")
    order = list(names)
    first = min(failures, key=order.index)
    return ScopeOutcome("Failed", runs.get(first))


DEFAULT_RETRY_INTERVAL = 30.0


def inactive_status(obj: Mapping[str, Any]) -> Status:
    """The status an inactive activity reports (``onInactiveMarkAs``, default Succeeded)."""
    marked = str(obj.get("onInactiveMarkAs") or SUCCEEDED)
    return FAILED if marked == FAILED else SKIPPED if marked == SKIPPED else SUCCEEDED


def retry_policy(obj: Mapping[str, Any], ctx: EvalContext) -> tuple[int, float]:
    """``policy.retry`` (evaluated) and ``policy.retryIntervalInSeconds`` of an activity."""
    policy = obj.get("policy")
    if not isinstance(policy, Mapping):
        return 0, DEFAULT_RETRY_INTERVAL
    try:
        retries = int(evaluate_json(policy.get("retry", 0), ctx) or 0)
    except Exception:  # an unreadable retry count means no retries, as the service treats it at run time
        retries = 0
    interval = policy.get("retryIntervalInSeconds")
    return max(retries, 0), float(interval) if isinstance(interval, (int, float)) else DEFAULT_RETRY_INTERVAL


def initial_value(spec: Any) -> Any:
    """A variable before any SetVariable: its default, else ``''`` for a String (ADF does not give null)."""
    if not isinstance(spec, Mapping):
        return None
    if "defaultValue" in spec:
        return spec["defaultValue"]
    return "" if str(spec.get("type", "")).lower() == "string" else None
