"""The expression engine's known divergences from ADF, each settled against a source (one test each).

* Uninitialized String variable: ``''``, not null (AZURE_FACTS.md §5: the Microsoft testing framework left its
  pure-Python evaluator after divergences like this one).
* Booleans inside ``@{}``: ``True`` / ``False``. ADF's expression runtime is .NET (AZURE_FACTS.md §5: the Microsoft
  runtime needs a .NET runtime), and interpolation writes a value with .NET's ``ToString()``, which gives
  ``True``/``False`` (System.Boolean.ToString documentation); the same Microsoft expression family was reported
  doing exactly this (MicrosoftDocs/azure-devops-docs#10273: "boolean will typecast to 'True'", doc corrected).
* ``if`` / ``and`` / ``or`` short-circuit (re-settled 2026-12, AZURE_FACTS.md §9):
  microsoft/data-factory-testing-framework#66 reports a production pipeline relying on
  ``@or(equals(x, ''), …addSeconds(x, -1)…)``, and that framework, which evaluates with ADF's own .NET
  expression runtime since 1.0, expects short-circuit for all three. This outweighs the older
  Logic Apps anecdote (blog.kloud.com.au 2017-10-17) this file used to cite for the opposite.
* Container activities (ForEach, IfCondition, Until, Switch) output ``{}``: the spec example
  ActivityRuns_QueryByPipelineRun.json lists a ForEach run with ``"output": {}``.
"""

from __future__ import annotations

from typing import Any

import pytest

from cicd_tools.adf.expressions import EvalContext, ExpressionError, evaluate_value
from cicd_tools.adf.runner import run_pipeline


def ev(text: str) -> Any:
    return evaluate_value(text, EvalContext())


def pipe(*activities: dict[str, Any], variables: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "pl", "properties": {"activities": list(activities), "variables": variables or {}}}


def test_an_uninitialized_string_variable_is_the_empty_string() -> None:
    result = run_pipeline(pipe(
        {"name": "Use", "type": "SetVariable",
         "typeProperties": {"variableName": "out", "value": "@coalesce(variables('s'), 'null')"}},
        variables={"s": {"type": "String"}, "out": {"type": "String"}},
    ))
    assert result.activity("Use").output == {"name": "out", "value": ""}  # null would give 'null'


def test_an_uninitialized_array_variable_keeps_no_invented_default() -> None:
    # Only the String case is documented; AppendVariable still treats the missing array as empty.
    result = run_pipeline(pipe(
        {"name": "Add", "type": "AppendVariable", "typeProperties": {"variableName": "a", "value": 1}},
        variables={"a": {"type": "Array"}},
    ))
    assert result.succeeded


def test_booleans_interpolate_as_dotnet_writes_them() -> None:
    assert ev("ok=@{equals(1, 1)} no=@{equals(1, 2)}") == "ok=True no=False"
    assert ev("@string(true)") == "True"


# Source: microsoft/data-factory-testing-framework#66 (and its .NET-runtime expression tests since 1.0).
@pytest.mark.parametrize(("text", "expected"), [("@if(true, 'a', div(1, 0))", "a"),
                                                ("@and(false, equals(div(1, 0), 1))", False),
                                                ("@or(true, equals(div(1, 0), 1))", True)])
def test_if_and_or_short_circuit(text: str, expected: Any) -> None:
    assert ev(text) == expected


# The argument that decides is still evaluated, so its failure surfaces (same source).
@pytest.mark.parametrize("text", ["@if(false, 'a', div(1, 0))", "@and(true, equals(div(1, 0), 1))",
                                  "@or(false, equals(div(1, 0), 1))"])
def test_the_deciding_argument_of_if_and_or_is_evaluated(text: str) -> None:
    with pytest.raises(ExpressionError, match="div"):
        ev(text)


def test_container_activities_output_an_empty_object() -> None:
    inner = {"name": "Noop", "type": "SetVariable", "typeProperties": {"variableName": "v", "value": "x"}}
    result = run_pipeline(pipe(
        {"name": "Loop", "type": "ForEach",
         "typeProperties": {"items": "@createArray(1)", "isSequential": True, "activities": [inner]}},
        {"name": "Branch", "type": "IfCondition", "typeProperties": {"expression": "@true",
                                                                     "ifTrueActivities": []}},
        {"name": "Read", "type": "SetVariable", "dependsOn": [
            {"activity": "Loop", "dependencyConditions": ["Succeeded"]},
            {"activity": "Branch", "dependencyConditions": ["Succeeded"]}],
         "typeProperties": {"variableName": "v", "value": "@string(activity('Loop').output)"}},
        variables={"v": {"type": "String"}},
    ))
    assert result.activity("Loop").to_dict()["output"] == {}
    assert result.activity("Branch").to_dict()["output"] == {}
    assert result.activity("Read").output == {"name": "v", "value": "{}"}


def test_a_trailing_null_safe_question_mark_is_a_syntax_error_inside_the_text() -> None:
    # Found by the fuzz test: '?' at the very end was taken for '?[' and reported past the end of the text.
    with pytest.raises(ExpressionError) as err:
        ev("@0?")
    assert err.value.position == 2 and "after '?'" in err.value.message
