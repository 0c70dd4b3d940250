"""ADF expression language: parser and evaluator (AZURE_FACTS.md §5). The public API; linter and runner use it.

A JSON string value is one of: a literal; a whole expression (``"@concat('a', 'b')"``, which keeps its
type); or an interpolation (``"Run @{pipeline().RunId}"``, always a string). ``@@`` at the start is a
literal ``@``, ``@@{`` inside a string a literal ``@{``, and a leading space means "not an expression".
The work is split across ``parser`` (syntax), ``eval`` (evaluation) and the function modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from cicd_tools.adf.expressions.eval import evaluate_template
from cicd_tools.adf.expressions.parser import MAX_DEPTH, SYSTEM_PROPERTIES, compile_value, has_expression
from cicd_tools.adf.expressions.registry import FUNCTIONS, NOT_EVALUATED_LOCALLY
from cicd_tools.adf.expressions.types import (
    ActivityResult,
    EvalContext,
    ExpressionError,
    ParsedValue,
    Reference,
    ReferenceKind,
    UnknownFunctionError,
)
from cicd_tools.adf.expressions.values import to_string

__all__ = [
    "FUNCTION_NAMES",
    "MAX_DEPTH",
    "NOT_EVALUATED_LOCALLY",
    "SYSTEM_PROPERTIES",
    "ActivityResult",
    "EvalContext",
    "ExpressionError",
    "ParsedValue",
    "Reference",
    "ReferenceKind",
    "UnknownFunctionError",
    "evaluate_json",
    "evaluate_value",
    "is_expression",
    "iter_expression_strings",
    "parse_value",
    "render_string",
]

FUNCTION_NAMES: frozenset[str] = frozenset(FUNCTIONS)  # lower-case names of every supported function

_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")  # same rule as jsonpos.child


def is_expression(value: str) -> bool:
    """True when a JSON string value is (or contains) an expression ADF would evaluate."""
    return has_expression(value)


def parse_value(value: str) -> ParsedValue:
    """Parse a JSON string value as ADF would. Raises: ExpressionError with the position."""
    return compile_value(value).parsed


def evaluate_value(value: str, ctx: EvalContext) -> Any:
    """Evaluate a JSON string value: whole ``@expr`` keeps its type, ``@{..}`` yields a string.

    Raises: ExpressionError (UnknownFunctionError for a function ADF does not have).
    """
    return evaluate_template(compile_value(value), ctx)


def _is_expression_object(value: dict[str, Any]) -> bool:
    return len(value) == 2 and value.get("type") == "Expression" and "value" in value


def evaluate_json(value: Any, ctx: EvalContext) -> Any:
    """Evaluate every string (and ``{"value":..,"type":"Expression"}`` object) inside a JSON value."""
    if isinstance(value, str):
        return evaluate_value(value, ctx)
    if isinstance(value, dict):
        if _is_expression_object(value):
            return evaluate_json(value["value"], ctx)
        return {key: evaluate_json(item, ctx) for key, item in value.items()}
    if isinstance(value, list):
        return [evaluate_json(item, ctx) for item in value]
    return value


def _child_path(path: str, key: str) -> str:
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"


def iter_expression_strings(doc: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    """Yield ``(json_path, string)`` for every string in ``doc`` that ADF would treat as an expression."""
    stack: list[tuple[str, Any]] = [(path, doc)]
    while stack:  # explicit stack: deep documents cannot exhaust the recursion limit
        where, node = stack.pop()
        if isinstance(node, str):
            if has_expression(node):
                yield where, node
        elif isinstance(node, dict):
            stack.extend((_child_path(where, str(k)), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(node))))


def render_string(value: Any) -> str:
    """A value as ADF writes it into a string (``@{...}``, ``string()``): ``True``, ``1.5``, compact JSON."""
    return to_string(value)
