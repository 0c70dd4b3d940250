"""Evaluates compiled ADF templates against an ``EvalContext``.

Property access (``.x``, ``['x']``) matches the exact name first and then ignores case; ``?.`` and ``?[``
give null instead of an error when the value is null or the property or index is missing.
Function arguments are evaluated left to right before the call, except for ``and``, ``or`` and ``if``, which
short-circuit as ADF's own .NET runtime does (microsoft/data-factory-testing-framework#66; AZURE_FACTS.md §9):
``or`` stops at the first true, ``and`` at the first false, ``if`` evaluates only the branch it returns.
"""

from __future__ import annotations

from typing import Any

from cicd_tools.adf.expressions.budget import EvaluationLimit, check_value, join_bounded
from cicd_tools.adf.expressions.parser import Call, Lit, Node, Template
from cicd_tools.adf.expressions.registry import FUNCTIONS
from cicd_tools.adf.expressions.types import (
    AdfObject,
    Env,
    EvalContext,
    EvaluationLimitError,
    ExpressionError,
    FunctionFailure,
    UnknownFunctionError,
    lookup_property,
)
from cicd_tools.adf.expressions.values import to_string, type_name, want_bool

_SHORT_CIRCUIT = frozenset({"and", "or", "if"})


def evaluate_template(template: Template, ctx: EvalContext) -> Any:
    """The value of a compiled JSON string value. Raises: ExpressionError, UnknownFunctionError."""
    text = template.parsed.text
    env = Env(ctx)
    if template.parsed.kind == "literal":
        return template.literal
    if template.root is not None:
        return _plain(evaluate_node(template.root, env, text))
    try:
        return join_bounded(
            (part if isinstance(part, str) else to_string(evaluate_node(part, env, text)) for part in template.parts),
            "", "the interpolated string")
    except FunctionFailure as exc:
        raise _failed(exc, str(exc), 0, text) from None
    except RecursionError:
        raise ExpressionError("a value in the string nests too deeply to render", position=0, text=text) from None


def _failed(exc: FunctionFailure, message: str, position: int, text: str) -> ExpressionError:
    """The ExpressionError for a failed function; a value past the budget gets its own class (a usage error in
    ``run-local`` too, where other expression failures fail the activity as ADF would)."""
    kind = EvaluationLimitError if isinstance(exc, EvaluationLimit) else ExpressionError
    return kind(message, position=position, text=text)


def evaluate_node(node: Node, env: Env, text: str) -> Any:
    """Evaluate one expression node (recursion depth is bounded by the parser's nesting limit)."""
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, Call):
        return _call(node, env, text)
    value = evaluate_node(node.base, env, text)
    for step in node.steps:
        if step.name is not None:
            value = _member(value, step.name, step.null_safe, step.pos, text)
        else:
            assert step.index is not None
            value = _index(value, evaluate_node(step.index, env, text), step.null_safe, step.pos, text)
    return value


def _call(node: Call, env: Env, text: str) -> Any:
    spec = FUNCTIONS.get(node.key)
    if spec is None:
        raise UnknownFunctionError(
            f"the template function '{node.name}' is not defined or not valid", position=node.pos, text=text
        )
    if node.key in _SHORT_CIRCUIT:
        return _short_circuit(node, spec.name, env, text)
    args = [evaluate_node(arg, env, text) for arg in node.args]
    try:
        result = spec.impl(args, env)
        check_value(result, f"the result of {spec.name}()")
        return result
    except FunctionFailure as exc:
        raise _failed(exc, f"{spec.name}(): {exc}", node.pos, text) from None
    except (ArithmeticError, ValueError, TypeError, IndexError, KeyError) as exc:
        # A value the implementation did not anticipate: still the user's input, so a usage error.
        raise ExpressionError(f"{spec.name}() failed: {exc}", position=node.pos, text=text) from exc
    except RecursionError:  # a value nested deeper than the stack (json() of a deep text, rendering it)
        raise ExpressionError(f"{spec.name}(): the value nests too deeply", position=node.pos, text=text) from None


def _short_circuit(node: Call, name: str, env: Env, text: str) -> Any:
    """``and`` / ``or`` / ``if``: only the arguments that decide the result are evaluated."""
    try:
        if node.key == "if":
            chosen = want_bool(evaluate_node(node.args[0], env, text), "if expression")
            return evaluate_node(node.args[1 if chosen else 2], env, text)
        decisive = node.key == "or"  # or: the first true decides; and: the first false
        for arg in node.args:
            if want_bool(evaluate_node(arg, env, text), f"{name} argument") is decisive:
                return decisive
        return not decisive
    except FunctionFailure as exc:
        raise _failed(exc, f"{name}(): {exc}", node.pos, text) from None


def _member(value: Any, name: str, null_safe: bool, pos: int, text: str) -> Any:
    if value is None:
        if null_safe:
            return None
        raise ExpressionError(
            f"cannot select property '{name}' of null (write '?.{name}' to get null instead)", position=pos, text=text
        )
    if not isinstance(value, dict):
        raise ExpressionError(
            f"cannot select property '{name}' of a value of type {type_name(value)}", position=pos, text=text
        )
    found, result = lookup_property(value, name)
    if found or null_safe:
        return result
    available = ", ".join(repr(k) for k in list(value)[:20]) or "none"
    raise ExpressionError(
        f"property '{name}' doesn't exist; available properties: {available}", position=pos, text=text
    )


def _index(value: Any, key: Any, null_safe: bool, pos: int, text: str) -> Any:
    if value is None:
        if null_safe:
            return None
        raise ExpressionError("cannot index null (write '?[' to get null instead)", position=pos, text=text)
    if isinstance(value, list | tuple):
        if isinstance(key, bool) or not isinstance(key, int):
            raise ExpressionError(f"an Array index must be an Integer, got {type_name(key)}", position=pos, text=text)
        if 0 <= key < len(value):
            return value[key]
        if null_safe:
            return None
        raise ExpressionError(
            f"index {key} is outside the bounds of an array of length {len(value)}", position=pos, text=text
        )
    if isinstance(value, dict):
        if not isinstance(key, str):
            raise ExpressionError(
                f"an Object property name must be a String, got {type_name(key)}", position=pos, text=text
            )
        return _member(value, key, null_safe, pos, text)
    raise ExpressionError(f"cannot index a value of type {type_name(value)}", position=pos, text=text)


def _plain(value: Any) -> Any:
    """Service objects become plain dicts so callers get ordinary JSON values back."""
    if isinstance(value, AdfObject):
        return {k: _plain(v) for k, v in value.items()}
    return value
