"""The evaluation budget of ADF expressions and local runs (issue 19, point 4).

ADF caps a WebActivity response at 4 MB and a ForEach at 100,000 items; the local evaluator refuses to build a string
or an array past those sizes *before* building it, so a bomb is an EvaluationLimitError (exit 2) or, inside a run,
the activity's LocalEvaluationLimit failure, never a MemoryError. A local run stops at MAX_ACTIVITY_RUNS activity
runs. ``adf run-local`` refuses a run that hit any of these limits with exit 2 (issue 19: every bomb is a usage
error), naming the limit and where the limits are listed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.adf.expressions import EvalContext, ExpressionError, evaluate_value
from cicd_tools.adf.expressions.budget import MAX_ARRAY_ITEMS, MAX_STRING_CHARS
from cicd_tools.adf.expressions.types import EvaluationLimitError
from cicd_tools.adf.runner import run_pipeline
from cicd_tools.cli.main import main


def _eval(value: str, **variables: Any) -> Any:
    return evaluate_value(value, EvalContext(variables=variables))


def _nested_replace(levels: int) -> str:
    expr = "'a'"
    for _ in range(levels):
        expr = f"replace({expr}, 'a', 'aaaaaaaaaa')"
    return "@" + expr


def test_nested_replace_stops_at_the_string_limit() -> None:
    assert len(_eval(_nested_replace(6))) == 10**6  # under the limit: evaluated
    with pytest.raises(EvaluationLimitError, match="replace\\(\\): the replaced string would be 10,000,000 characters"):
        _eval(_nested_replace(10))


def test_concat_past_the_limit_is_refused() -> None:
    half = "x" * (MAX_STRING_CHARS // 2 + 1)
    with pytest.raises(ExpressionError, match="concat\\(\\): the concatenated string would be"):
        _eval("@concat(variables('s'), variables('s'))", s=half)
    assert len(_eval("@concat(variables('s'), 'y')", s=half)) == len(half) + 1


def test_interpolation_past_the_limit_is_refused() -> None:
    half = "x" * (MAX_STRING_CHARS // 2 + 1)
    with pytest.raises(ExpressionError, match="the interpolated string would be"):
        _eval("@{variables('s')}@{variables('s')}", s=half)


def test_join_past_the_limit_is_refused() -> None:
    with pytest.raises(ExpressionError, match="join\\(\\): the joined string would be"):
        _eval("@join(variables('a'), variables('s'))", a=["x"] * 1000, s="y" * 10_000)


def test_rendering_one_array_referenced_many_times_is_refused_before_rendering() -> None:
    # 40 references to one 100,000-item array: the text would be ~23 MB; refused while summing its size.
    refs = ", ".join(["variables('a')"] * 40)
    with pytest.raises(ExpressionError, match="the value rendered as text would be"):
        _eval(f"@string(createArray({refs}))", a=list(range(100_000)))


def test_an_array_past_the_item_limit_is_refused() -> None:
    with pytest.raises(ExpressionError, match=f"has {MAX_ARRAY_ITEMS + 1:,} items"):
        _eval("@concat(range(0, 100000), createArray(1))")


def test_json_of_a_deeply_nested_text_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError):
        _eval("@json(variables('t'))", t="[" * 100_000 + "]" * 100_000)


def _foreach_pipeline(items: int) -> dict[str, Any]:
    return {"name": "pl", "properties": {"activities": [{
        "name": "Each", "type": "ForEach",
        "typeProperties": {"isSequential": True,
                           "items": {"value": f"@range(0, {items})", "type": "Expression"},
                           "activities": [{"name": "Pause", "type": "Wait",
                                           "typeProperties": {"waitTimeInSeconds": 0}}]}}]}}


def test_a_local_run_stops_at_its_activity_run_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cicd_tools.adf.run_model.MAX_ACTIVITY_RUNS", 5)
    result = run_pipeline(_foreach_pipeline(10), sleep=lambda seconds: None)
    assert not result.succeeded
    assert "activity 'Pause' would be activity run 6 of this local run; the local runner's limit is 5" in result.message
    assert {r.error["errorCode"] for r in result.activity_runs if r.error and r.activity_type == "Wait"} \
        == {"LocalRunLimit"}
    assert run_pipeline(_foreach_pipeline(4), sleep=lambda seconds: None).succeeded  # 1 + 4 runs: within budget


def test_an_expression_error_that_is_not_the_budget_is_not_an_evaluation_limit() -> None:
    with pytest.raises(ExpressionError) as raised:
        _eval("@concat(variables('s'), 1, createArray(1))", s="x")  # concat of an array: ADF refuses the type
    assert not isinstance(raised.value, EvaluationLimitError)


def _doubling_pipeline() -> dict[str, Any]:
    """An Until that doubles a string forever (issue 19: run-local reached 2 GB and printed a traceback)."""
    return {"name": "pl_double", "properties": {
        "variables": {"s": {"type": "String", "defaultValue": "ab"}, "t": {"type": "String"}},
        "activities": [{"name": "Grow", "type": "Until", "typeProperties": {
            "expression": {"value": "@equals(1, 2)", "type": "Expression"},
            "activities": [
                {"name": "Double", "type": "SetVariable", "typeProperties": {
                    "variableName": "t", "value": {"value": "@concat(variables('s'), variables('s'))",
                                                   "type": "Expression"}}},
                {"name": "Back", "type": "SetVariable",
                 "dependsOn": [{"activity": "Double", "dependencyConditions": ["Succeeded"]}],
                 "typeProperties": {"variableName": "s", "value": {"value": "@variables('t')",
                                                                    "type": "Expression"}}}]}}]}}


def test_a_run_that_reaches_the_string_limit_names_the_limit_as_its_breach() -> None:
    result = run_pipeline(_doubling_pipeline(), sleep=lambda seconds: None)
    breach = result.limit_breach()
    assert breach is not None and breach.activity_name == "Double" and breach.error is not None
    assert breach.error["errorCode"] == "LocalEvaluationLimit"
    assert f"the local evaluator's limit is {MAX_STRING_CHARS:,}" in breach.error["message"]


def test_a_run_that_fails_on_its_own_has_no_breach() -> None:
    pipeline = {"name": "pl", "properties": {"activities": [
        {"name": "Boom", "type": "Fail", "typeProperties": {"message": "no", "errorCode": "E1"}}]}}
    result = run_pipeline(pipeline, sleep=lambda seconds: None)
    assert not result.succeeded and result.limit_breach() is None


def test_run_local_refuses_a_run_past_the_evaluation_budget_with_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pl_double.json"
    path.write_text(json.dumps(_doubling_pipeline()))
    assert main(["adf", "run-local", str(path)]) == 2
    err = capsys.readouterr().err
    assert "activity 'Double' (LocalEvaluationLimit)" in err and "characters long" in err
    assert "docs/limits.md" in err and "no flag raises them" in err


def test_run_local_refuses_a_run_past_the_activity_run_budget_with_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cicd_tools.adf.run_model.MAX_ACTIVITY_RUNS", 5)
    path = tmp_path / "pl.json"
    path.write_text(json.dumps(_foreach_pipeline(10)))
    assert main(["adf", "run-local", str(path)]) == 2
    assert "(LocalRunLimit): activity 'Pause' would be activity run 6" in capsys.readouterr().err
