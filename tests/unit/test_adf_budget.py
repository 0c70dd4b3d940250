"""The evaluation budget of ADF expressions and local runs (issue 19, point 4).

ADF caps a WebActivity response at 4 MB and a ForEach at 100,000 items; the local evaluator refuses to build a string
or an array past those sizes *before* building it, so a bomb is an ExpressionError (exit 2) or, inside a run,
the activity's InvalidTemplate failure, never a MemoryError. A local run stops at MAX_ACTIVITY_RUNS activity runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from cicd_tools.adf.expressions import EvalContext, ExpressionError, evaluate_value
from cicd_tools.adf.expressions.budget import MAX_ARRAY_ITEMS, MAX_STRING_CHARS
from cicd_tools.adf.runner import run_pipeline


def _eval(value: str, **variables: Any) -> Any:
    return evaluate_value(value, EvalContext(variables=variables))


def _nested_replace(levels: int) -> str:
    expr = "'a'"
    for _ in range(levels):
        expr = f"replace({expr}, 'a', 'aaaaaaaaaa')"
    return "@" + expr


def test_nested_replace_stops_at_the_string_limit() -> None:
    assert len(_eval(_nested_replace(6))) == 10**6  # under the limit: evaluated
    with pytest.raises(ExpressionError, match="replace\\(\\): the replaced string would be 10,000,000 characters"):
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
