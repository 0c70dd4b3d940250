"""Expression cases in the shape of microsoft/data-factory-testing-framework's evaluator tests.

That framework (``tests/unit/functions/test_data_factory_testing_framework_expression_evaluator.py``) lists
``pytest.param(expression, state, expected, id=...)`` rows and evaluates each against a run state; since its 1.0
it evaluates with ADF's own .NET expression runtime, so its expectations are the service's. The rows below keep
that shape (the state is our ``EvalContext``). Sources per group:

* short-circuit of ``and`` / ``or`` / ``if``: microsoft/data-factory-testing-framework#66 (a production pipeline
  relies on ``@or(equals(x, ''), …addSeconds(x, -1)…)``); AZURE_FACTS.md §9;
* ``and`` / ``or`` arity: MicrosoftDocs/azure-docs#54944, #55549 ("function 'and' does not accept 3 argument(s)");
* ``activity('A').error``: the ADF docs' error-handling pattern ``@activity('A').error.message`` read by an
  activity that depends on A with the ``Failed`` condition (control-flow-expression-language-functions,
  tutorial-pipeline-failure-error-handling); the error object's keys are the activity run's ``error`` keys of the
  REST spec (ActivityRuns_QueryByPipelineRun.json: errorCode, message, failureType, target).
"""

from __future__ import annotations

from typing import Any

import pytest
from pytest import param as p

from cicd_tools.adf.expressions import ActivityResult, EvalContext, ExpressionError, evaluate_value
from cicd_tools.adf.runner import PipelineInvalid, run_pipeline
from cicd_tools.cli import main as cli

EMPTY_X = EvalContext(items=[{"x": ""}])
STAMP_X = EvalContext(items=[{"x": "2024-05-01T06:00:00Z"}])
FAILED_CALL = EvalContext(activity_outputs={"Call": ActivityResult(
    output={}, status="Failed",
    error={"errorCode": "2108", "message": "Invoking Web Activity failed with HttpStatusCode - '404'.",
           "failureType": "UserError", "target": "Call"})})


@pytest.mark.parametrize(
    ("expression", "state", "expected"),
    [
        p("@or(true, equals(div(1, 0), 1))", EvalContext(), True, id="or_true_skips_right"),
        p("@and(false, equals(div(1, 0), 1))", EvalContext(), False, id="and_false_skips_right"),
        p("@if(true, 'left', div(1, 0))", EvalContext(), "left", id="if_true_skips_false_branch"),
        p("@if(false, div(1, 0), 'right')", EvalContext(), "right", id="if_false_skips_true_branch"),
        # The DFTF#66 pattern: an empty timestamp must not reach addSeconds.
        p("@or(equals(item().x, ''), greaterOrEquals(ticks(utcNow()), ticks(addSeconds(item().x, -1))))",
          EMPTY_X, True, id="or_guard_on_empty_timestamp"),
        p("@or(equals(item().x, ''), greaterOrEquals(ticks('2024-05-01T07:00:00Z'), ticks(addSeconds(item().x, -1))))",
          STAMP_X, True, id="or_guard_on_timestamp_evaluates_right"),
        p("@and(not(empty(item().x)), equals(first(item().x), '2'))", EMPTY_X, False, id="and_guard_on_empty"),
        p("@if(empty(item().x), 0, length(item().x))", STAMP_X, 20, id="if_guard_on_non_empty"),
        p("@activity('Call').error.message", FAILED_CALL,
          "Invoking Web Activity failed with HttpStatusCode - '404'.", id="activity_error_message"),
        p("@activity('Call').error.errorCode", FAILED_CALL, "2108", id="activity_error_code"),
        p("@activity('Call')?.error?.details", FAILED_CALL, None, id="activity_error_missing_key_null_safe"),
    ],
)
def test_evaluate(expression: str, state: EvalContext, expected: Any) -> None:
    assert evaluate_value(expression, state) == expected


@pytest.mark.parametrize(
    ("expression", "state", "message"),
    [
        p("@or(false, equals(div(1, 0), 1))", EvalContext(), "div by zero", id="or_false_evaluates_right"),
        p("@and(true, equals(div(1, 0), 1))", EvalContext(), "div by zero", id="and_true_evaluates_right"),
        p("@and(true, true, true)", EvalContext(), "'and' takes 2 arguments, got 3", id="and_three_arguments"),
        p("@or(true)", EvalContext(), "'or' takes 2 arguments, got 1", id="or_one_argument"),
        p("@or(false, 'true')", EvalContext(), "or argument must be a Boolean", id="or_deciding_string"),
    ],
)
def test_evaluate_raises(expression: str, state: EvalContext, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        evaluate_value(expression, state)


def test_a_failure_path_reads_the_failed_activity_error_in_the_local_runner() -> None:
    pipeline = {"name": "pl", "properties": {"variables": {"why": {"type": "String"}}, "activities": [
        {"name": "Boom", "type": "Fail", "typeProperties": {"message": "bad input", "errorCode": "4711"}},
        {"name": "Log", "type": "SetVariable",
         "dependsOn": [{"activity": "Boom", "dependencyConditions": ["Failed"]}],
         "typeProperties": {"variableName": "why", "value":
                            "@concat(activity('Boom').error.errorCode, ': ', activity('Boom').error.message)"}},
    ]}}
    result = run_pipeline(pipeline)
    assert result.activity("Log").output == {"name": "why", "value": "4711: bad input"}


def test_adf_eval_reads_an_activity_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["adf", "eval", "@concat(activity('Call').error.errorCode, '|', activity('Call').error.message)",
                     "--activity-error", 'Call={"errorCode": "2108", "message": "not found"}'])
    assert code == 0
    assert capsys.readouterr().out.strip() == "2108|not found"


def test_adf_eval_takes_a_plain_message_as_the_error_message(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["adf", "eval", "@activity('Call').error.message", "--activity-error", "Call=it broke"])
    assert code == 0
    assert capsys.readouterr().out.strip() == "it broke"


@pytest.mark.parametrize("batch", [51, 60, 0])
def test_the_local_runner_refuses_a_foreach_batch_count_adf_refuses(batch: int) -> None:
    # "batchCount ... Integer (maximum 50)" (learn.microsoft.com control-flow-for-each-activity); "must be between
    # 1 and 50" (MicrosoftDocs/azure-docs#58758). Refused like the service refuses it, not clamped to 50.
    loop = {"name": "Loop", "type": "ForEach", "typeProperties": {
        "items": "@createArray(1, 2)", "isSequential": False, "batchCount": batch,
        "activities": [{"name": "W", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 0}}]}}
    with pytest.raises(PipelineInvalid, match=f"ForEach activity 'Loop': batchCount must be between 1 and 50.*{batch}"):
        run_pipeline({"name": "pl", "properties": {"activities": [loop]}})
