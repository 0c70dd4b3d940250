"""Expression lint rules: parse errors, unknown functions, and what expressions reference.

ADF refuses ``activity('X')`` unless X is a (transitive) ``dependsOn`` ancestor of the activity or of one
of its enclosing containers, so a reference to a non-ancestor is an error (ADF041), not a style warning.
An Until ``expression`` is evaluated after each iteration and may also read the Until's own activities.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cicd_tools.adf import jsonpos
from cicd_tools.adf.expressions import (
    SYSTEM_PROPERTIES,
    ExpressionError,
    Reference,
    iter_expression_strings,
    parse_value,
)
from cicd_tools.adf.lint_findings import Severity
from cicd_tools.adf.lint_model import ActivityNode, without_inner_lists
from cicd_tools.adf.lint_rules import Checker


def _relative(node: ActivityNode, path: str) -> tuple[jsonpos.PathPart, ...]:
    parts = jsonpos.split(path)
    base = jsonpos.split(node.path)
    return parts[len(base) :] if parts[: len(base)] == base else parts


def check_expressions(c: Checker, node: ActivityNode) -> None:
    """ADF030/031 and ADF040-045 for every expression string of one activity (inner activities excluded)."""
    for path, text in iter_expression_strings(without_inner_lists(node.obj), node.path):
        try:
            parsed = parse_value(text)
        except ExpressionError as err:
            c.add(
                "ADF030",
                path,
                f"expression in '{node.name}' does not parse: {err.message}",
                "Fix the expression syntax (quotes are '', not \\'; @{...} interpolates into a string).",
                node=node,
            )
            continue
        for name, position in parsed.unknown_functions:
            c.add(
                "ADF031",
                path,
                f"'{node.name}' calls unknown function '{name}' (position {position})",
                "Check the spelling against the ADF expression function list.",
                node=node,
            )
        rel = _relative(node, path)
        for ref in parsed.references:
            _check_reference(c, node, ref, path, rel)


def _check_reference(
    c: Checker, node: ActivityNode, ref: Reference, path: str, rel: tuple[jsonpos.PathPart, ...]
) -> None:
    if ref.kind == "activity":
        _check_activity_reference(c, node, ref.name, path, rel)
    elif ref.kind == "parameter" and ref.name and c.parameters is not None:
        # pipeline() properties resolve ignoring case, so a case slip still works: info only.
        _check_declared(
            c,
            node,
            "ADF042",
            "parameter",
            ref.name,
            c.parameters,
            path,
            "Declare it under properties.parameters, or fix the name.",
            case_severity="info",
        )
    elif ref.kind == "globalParameter" and ref.name and c.factory.global_parameters is not None:
        _check_declared(
            c,
            node,
            "ADF043",
            "global parameter",
            ref.name,
            c.factory.global_parameters,
            path,
            "Define it in the factory's globalParameters (factory/*.json), or fix the name.",
            case_severity="info",
        )
    elif ref.kind == "variable" and ref.name and c.variables is not None:
        _check_declared(
            c,
            node,
            "ADF044",
            "variable",
            ref.name,
            c.variables,
            path,
            "Declare it under properties.variables, or fix the name.",
            case_severity="warning",
        )
    elif ref.kind == "system" and ref.name.lower() not in SYSTEM_PROPERTIES:
        c.add(
            "ADF046",
            path,
            f"'{node.name}' reads pipeline().{ref.name}, which is not a pipeline system variable",
            f"Use one of: {', '.join(sorted(SYSTEM_PROPERTIES.values()))}, or pipeline().parameters.X.",
            node=node,
        )
    elif ref.kind == "item" and not _item_allowed(node, rel):
        c.add(
            "ADF045",
            path,
            f"'{node.name}' uses item() outside a ForEach",
            "item() is only defined inside a ForEach (and in a Filter condition); pass the value another way.",
            node=node,
        )


def _check_declared(
    c: Checker,
    node: ActivityNode,
    rule: str,
    what: str,
    name: str,
    declared: Mapping[str, Any],
    path: str,
    fix: str,
    *,
    case_severity: Severity,
) -> None:
    names = list(declared)
    if name in names:
        return
    twin = next((n for n in names if isinstance(n, str) and n.lower() == name.lower()), None)
    if twin is not None:
        c.add(
            rule,
            path,
            f"'{node.name}' reads {what} '{name}', declared as '{twin}' (differs in case)",
            f"Write '{twin}' exactly as declared.",
            node=node,
            severity=case_severity,
        )
        return
    c.add(rule, path, f"'{node.name}' reads {what} '{name}', which is not declared", fix, node=node)


def _item_allowed(node: ActivityNode, rel: tuple[jsonpos.PathPart, ...]) -> bool:
    if any(container.type.lower() == "foreach" for container in node.containers()):
        return True
    return node.type.lower() == "filter" and rel[:2] == ("typeProperties", "condition")


def _check_activity_reference(
    c: Checker, node: ActivityNode, name: str, path: str, rel: tuple[jsonpos.PathPart, ...]
) -> None:
    by_name = c.model.by_name()
    if name not in by_name:
        twin = next((n for n in by_name if n.lower() == name.lower()), None)
        if twin is not None:
            c.add(
                "ADF040",
                path,
                f"'{node.name}' reads activity('{name}'), named '{twin}' (differs in case)",
                f"Write activity('{twin}').",
                node=node,
                severity="warning",
            )
        else:
            c.add(
                "ADF040",
                path,
                f"'{node.name}' reads activity('{name}'), which the pipeline does not have",
                "Fix the activity name.",
                node=node,
            )
        return
    visible = c.model.visible_activities(node)
    if node.type.lower() == "until" and rel[:2] == ("typeProperties", "expression"):
        visible |= {inner.name for inner in node.descendants()}
    if name in visible:
        return
    c.add(
        "ADF041",
        path,
        f"'{node.name}' reads activity('{name}'), which is not upstream of it: ADF only allows the output"
        " of a (transitive) dependsOn ancestor of the activity or of its enclosing containers",
        f"Add a dependsOn path from '{name}' to '{node.name}' (or to its container), or read the value"
        " another way (a variable set upstream).",
        node=node,
    )
