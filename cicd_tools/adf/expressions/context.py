"""ADF functions that read the run: pipeline(), activity(), variables(), item(), trigger()...

Objects the service provides (``pipeline()``, its ``parameters``, ``activity('A')``) are ``AdfObject``s,
whose property names match case-insensitively (``pipeline().Parameters`` works). Activity and variable
names passed as strings match exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cicd_tools.adf.expressions.types import ActivityResult, AdfObject, Env, FunctionFailure, FunctionSpec, Impl
from cicd_tools.adf.expressions.values import want_str


def _names(mapping: Mapping[str, Any]) -> str:
    shown = ", ".join(repr(k) for k in list(mapping)[:20])
    return shown or "none"


def _pipeline(args: Sequence[Any], env: Env) -> AdfObject:
    ctx = env.ctx
    # "trigger" in ctx.system feeds trigger(); it is not a pipeline() property.
    obj = AdfObject({k: v for k, v in ctx.system.items() if k != "trigger"})
    obj["parameters"] = AdfObject(ctx.parameters)
    obj["globalParameters"] = AdfObject(ctx.global_parameters)
    return obj


def _activity(args: Sequence[Any], env: Env) -> AdfObject:
    name = want_str(args[0], "activity name")
    outputs = env.ctx.activity_outputs
    if name not in outputs:
        raise FunctionFailure(
            f"activity {name!r} has no output here: it has not run, or it is not an upstream dependency"
            f" (known: {_names(outputs)})"
        )
    value = outputs[name]
    if isinstance(value, ActivityResult):
        obj = AdfObject(output=value.output)
        if value.status is not None:
            obj["status"] = value.status
        if value.error is not None:
            obj["error"] = value.error
        return obj
    return AdfObject(output=value)


def _variables(args: Sequence[Any], env: Env) -> Any:
    name = want_str(args[0], "variable name")
    variables = env.ctx.variables
    if name not in variables:
        raise FunctionFailure(f"variable {name!r} is not set (known: {_names(variables)})")
    return variables[name]


def _item(args: Sequence[Any], env: Env) -> Any:
    if not env.ctx.items:
        raise FunctionFailure("item() is only available inside a ForEach (or a Filter condition)")
    return env.ctx.items[-1]


def _trigger(args: Sequence[Any], env: Env) -> AdfObject:
    trigger = env.ctx.system.get("trigger")
    if not isinstance(trigger, Mapping):
        raise FunctionFailure("trigger() is only available in trigger definitions (no 'trigger' in this context)")
    return AdfObject(trigger)


def _trigger_body(args: Sequence[Any], env: Env) -> Any:
    outputs = _trigger(args, env).lookup("outputs")[1]
    found, body = AdfObject(outputs).lookup("body") if isinstance(outputs, Mapping) else (False, None)
    if not found:
        raise FunctionFailure("triggerBody() needs trigger().outputs.body in this context")
    return body


def _definition_only(what: str) -> Impl:
    def impl(args: Sequence[Any], env: Env) -> Any:
        raise FunctionFailure(f"{what}() is only available inside {what} definitions, not in a pipeline run")

    return impl


def _spec(name: str, low: int, high: int | None, impl: Impl) -> tuple[str, FunctionSpec]:
    return name.lower(), FunctionSpec(name, low, high, impl)


CONTEXT_FUNCTIONS: dict[str, FunctionSpec] = dict(
    [
        _spec("pipeline", 0, 0, _pipeline),
        _spec("activity", 1, 1, _activity),
        _spec("variables", 1, 1, _variables),
        _spec("item", 0, 0, _item),
        _spec("dataset", 0, 0, _definition_only("dataset")),
        _spec("linkedService", 0, 0, _definition_only("linkedService")),
        _spec("trigger", 0, 0, _trigger),
        _spec("triggerBody", 0, 0, _trigger_body),
    ]
)
