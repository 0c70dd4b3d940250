"""ADF expression syntax: literals, whole expressions, interpolation, escapes, access, references, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cicd_tools.adf.expressions import (
    FUNCTION_NAMES,
    MAX_DEPTH,
    ActivityResult,
    EvalContext,
    ExpressionError,
    Reference,
    UnknownFunctionError,
    evaluate_json,
    evaluate_value,
    is_expression,
    iter_expression_strings,
    parse_value,
)
from cicd_tools.support.errors import ExitCode, UsageError


def ev(value: str, **ctx: Any) -> Any:
    return evaluate_value(value, EvalContext(**ctx))


DOC_PARAMS = {"myNumber": 42, "myString": "foo", "firstName": "Sophia", "lastName": "Owen"}


# --- documented value forms ("Expressions" section of the ADF docs) ----------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("parameters", "parameters"),
        ("parameters[1]", "parameters[1]"),
        ("@@", "@"),
        (" @", " @"),
        ("@pipeline().parameters.myString", "foo"),
        ("@{pipeline().parameters.myString}", "foo"),
        ("@pipeline().parameters.myNumber", 42),
        ("@{pipeline().parameters.myNumber}", "42"),
        ("Answer is: @{pipeline().parameters.myNumber}", "Answer is: 42"),
        ("@concat('Answer is: ', string(pipeline().parameters.myNumber))", "Answer is: 42"),
        ("Answer is: @@{pipeline().parameters.myNumber}", "Answer is: @{pipeline().parameters.myNumber}"),
        (
            "First Name: @{pipeline().parameters.firstName} Last Name: @{pipeline().parameters.lastName}",
            "First Name: Sophia Last Name: Owen",
        ),
        ("@concat('Baba', '''s ', 'book store')", "Baba's book store"),
    ],
)
def test_documented_value_forms_evaluate_as_documented(value: str, expected: Any) -> None:
    assert ev(value, parameters=DOC_PARAMS) == expected


def test_dynamic_content_editor_example_interpolates_into_a_json_string() -> None:
    value = '{ \n  "type": "@{if(equals(1, 2), \'Blob\', \'Table\' )}",\n  "name": "@{toUpper(\'myData\')}"\n}'
    assert ev(value) == '{ \n  "type": "Table",\n  "name": "MYDATA"\n}'


def test_documented_newline_removal_via_uri_component_round_trip() -> None:
    value = "@uriComponentToString(replace(uriComponent(variables('companyName')), '%0A', ''))"
    assert ev(value, variables={"companyName": "Contoso-\nCorporation"}) == "Contoso-Corporation"


def test_whole_expression_keeps_its_type() -> None:
    assert ev("@pipeline().parameters.n", parameters={"n": 5}) == 5
    assert ev("@pipeline().parameters.flag", parameters={"flag": True}) is True
    assert ev("@createArray(1, 'a')") == [1, "a"]
    assert ev('@json(\'{"a": {"b": null}}\')') == {"a": {"b": None}}
    assert ev("@null") is None


def test_interpolation_renders_booleans_numbers_and_json_like_dotnet() -> None:
    assert ev("@{true}|@{false}|@{null}|@{1.5}|@{add(1, 2)}") == "True|False||1.5|3"
    assert ev("x=@{createArray(1, 'a')}") == 'x=[1,"a"]'
    assert ev("o=@{json('{\"k\": [true]}')}") == 'o={"k":[true]}'


def test_escaped_interpolation_in_the_middle_stays_literal_next_to_a_real_one() -> None:
    assert ev("a @@{x} b @{concat('c')}") == "a @{x} b c"


def test_backslash_is_an_ordinary_character_in_string_literals() -> None:
    assert ev("@concat('a\\', 'b')") == "a\\b"
    assert ev("@replace('x\\ny', '\\n', '-')") == "x-y"


def test_string_literal_may_contain_braces_and_at_signs_inside_interpolation() -> None:
    assert ev("v=@{concat('}', '@{x}', '{')}") == "v=}@{x}{"


def test_function_names_and_keywords_ignore_case() -> None:
    assert ev("@CONCAT('a', ToUpper('b'))") == "aB"
    assert ev("@UtcNow('yyyy')", now=lambda: datetime(2020, 1, 1, tzinfo=UTC)) == "2020"
    assert ev("@if(TRUE, 'y', 'n')") == "y"


def test_whitespace_between_tokens_is_allowed() -> None:
    assert ev("@concat( 'a' ,\n\t'b' )") == "ab"
    assert ev("@pipeline() . parameters [ 'p' ]", parameters={"p": 1}) == 1


def test_number_literals_include_negative_and_leading_dot_forms() -> None:
    assert ev("@add(-5, .5)") == -4.5
    assert ev("@mul(1e3, 2)") == 2000.0


# --- property access ------------------------------------------------------------------------------------


def test_pipeline_properties_are_case_insensitive() -> None:
    ctx = {"parameters": {"Env": "dev"}, "system": {"RunId": "r-1"}}
    assert ev("@pipeline().Parameters.env", **ctx) == "dev"
    assert ev("@pipeline().runid", **ctx) == "r-1"
    assert ev("@pipeline()['RUNID']", **ctx) == "r-1"


def test_global_parameters_and_system_properties_come_from_the_context() -> None:
    ctx = {"global_parameters": {"region": "weu"}, "system": {"DataFactory": "adf-1", "Pipeline": "ingest"}}
    assert ev("@{pipeline().DataFactory}/@{pipeline().Pipeline}/@{pipeline().globalParameters.region}", **ctx) == (
        "adf-1/ingest/weu"
    )


def test_activity_output_is_read_from_the_context() -> None:
    outputs = {"Lookup": {"firstRow": {"Name": "x"}, "value": [{"id": 1}, {"id": 2}]}}
    assert ev("@activity('Lookup').output.firstRow.Name", activity_outputs=outputs) == "x"
    assert ev("@activity('Lookup').output.value[1].id", activity_outputs=outputs) == 2
    assert ev("@activity('Lookup').Output['firstRow']['Name']", activity_outputs=outputs) == "x"


def test_activity_result_exposes_status_and_error() -> None:
    outputs = {"Copy": ActivityResult(output={"rows": 3}, status="Failed", error={"message": "boom"})}
    assert ev("@activity('Copy').Error.message", activity_outputs=outputs) == "boom"
    assert ev("@activity('Copy').status", activity_outputs=outputs) == "Failed"
    assert ev("@activity('Copy').output.rows", activity_outputs=outputs) == 3


def test_index_with_an_expression_selects_a_dynamic_property() -> None:
    # Documented: use [] with a parameter to select a sub-field by name.
    outputs = {"A": {"s1": {"s2": {"k": {"s4": "deep"}}}}}
    value = "@activity('A').output.s1.s2[pipeline().parameters.s3].s4"
    assert ev(value, activity_outputs=outputs, parameters={"s3": "k"}) == "deep"


def test_null_safe_access_returns_null_for_missing_properties_and_null_values() -> None:
    assert ev("@pipeline()?.TriggerEvent?.FileName") is None
    assert ev("@json('{\"a\": null}').a?.b") is None
    assert ev("@json('{\"a\": []}').a?[3]") is None
    assert ev("@coalesce(json('{}')?['missing'], 'default')") == "default"


def test_plain_access_to_a_missing_property_fails_and_lists_what_exists() -> None:
    with pytest.raises(ExpressionError, match=r"property 'nope' doesn't exist; available properties: 'a'") as err:
        ev("@json('{\"a\": 1}').nope")
    assert err.value.position == 17


def test_access_on_null_without_null_safe_operator_fails() -> None:
    with pytest.raises(ExpressionError, match=r"cannot select property 'b' of null"):
        ev("@json('{\"a\": null}').a.b")


def test_array_index_out_of_range_fails_with_the_bounds() -> None:
    with pytest.raises(ExpressionError, match="index 5 is outside the bounds of an array of length 2"):
        ev("@createArray(1, 2)[5]")


def test_array_index_must_be_an_integer() -> None:
    with pytest.raises(ExpressionError, match="an Array index must be an Integer, got String"):
        ev("@createArray(1, 2)['0']")


def test_variables_and_item_come_from_the_context() -> None:
    assert ev("@variables('v')", variables={"v": [1]}) == [1]
    assert ev("@item().name", items=[{"name": "outer"}, {"name": "inner"}]) == "inner"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("@variables('nope')", "variable 'nope' is not set"),
        ("@item()", r"item\(\) is only available inside a ForEach"),
        ("@activity('Nope').output", "activity 'Nope' has no output here"),
        ("@pipeline().RunId", "property 'RunId' doesn't exist"),
        ("@dataset().path", r"dataset\(\) is only available inside dataset definitions"),
        ("@xpath(xml('<a/>'), '/a')", "not supported by the local evaluator"),
    ],
)
def test_reading_what_the_context_lacks_fails_clearly(value: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        ev(value)


# --- parse results ----------------------------------------------------------------------------------------


def test_parse_value_classifies_literals_expressions_and_interpolations() -> None:
    assert parse_value("plain").kind == "literal"
    assert parse_value("@@literal").kind == "literal"
    assert parse_value(" @notexpr").kind == "literal"
    assert parse_value("a @@{escaped}").kind == "literal"
    assert parse_value("@concat('a')").kind == "expression"
    assert parse_value("@{concat('a')}").kind == "interpolation"
    assert parse_value("x @{concat('a')}").kind == "interpolation"


def test_references_name_what_the_expression_reads_with_positions() -> None:
    value = (
        "@concat(activity('A').output.x, pipeline().parameters.p, pipeline().globalParameters['g'],"
        " variables('v'), item(), pipeline().RunId, pipeline().triggertime)"
    )
    refs = parse_value(value).references
    assert refs == (
        Reference("activity", "A", value.index("activity")),
        Reference("parameter", "p", value.index("pipeline().parameters")),
        Reference("globalParameter", "g", value.index("pipeline().globalParameters")),
        Reference("variable", "v", value.index("variables")),
        Reference("item", "", value.index("item()")),
        Reference("system", "RunId", value.index("pipeline().RunId")),
        Reference("system", "TriggerTime", value.index("pipeline().triggertime")),
    )


def test_references_in_interpolations_carry_offsets_in_the_whole_value() -> None:
    value = "Run @{pipeline().RunId} of @{activity('Copy data').output.rowsCopied}"
    refs = parse_value(value).references
    assert refs == (
        Reference("system", "RunId", 6),
        Reference("activity", "Copy data", value.index("activity")),
    )


def test_dynamic_names_are_not_references() -> None:
    refs = parse_value("@activity(variables('name')).output[pipeline().parameters[item()]]").references
    assert [r.kind for r in refs] == ["variable", "item"]


def test_unknown_functions_are_recorded_not_raised_by_the_parser() -> None:
    parsed = parse_value("@concat(fooBar(1), 'x', Nope())")
    assert parsed.unknown_functions == (("fooBar", 8), ("Nope", 24))


def test_unknown_function_raises_at_evaluation_with_its_position() -> None:
    with pytest.raises(UnknownFunctionError, match="'fooBar' is not defined") as err:
        ev("@concat('a', fooBar(1))")
    assert err.value.position == 13
    assert isinstance(err.value, ExpressionError)


def test_function_names_set_is_lower_case_and_covers_the_documented_families() -> None:
    assert all(name == name.lower() for name in FUNCTION_NAMES)
    for name in ("concat", "indexof", "createarray", "uricomponenttostring", "formatdatetime", "pipeline", "xpath"):
        assert name in FUNCTION_NAMES


# --- errors carry positions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "position", "message"),
    [
        ("@concat('a', )", 13, "expected a value"),
        ("@concat('a'", 11, "missing '\\)'"),
        ("@concat('abc", 8, "unterminated string literal"),
        ("@concat('a') extra", 13, "unexpected 'e' after the end"),
        ("@pipeline().", 12, "expected a property name"),
        ("@pipeline", 9, "expected '\\(' after function name"),
        ("@", 1, "expected a value"),
        ("@x()?y", 4, "expected '.' or '\\[' after '\\?'"),
        ("@createArray(1)[0", 17, "expected '\\]'"),
        ('@concat("a")', 8, "found '\"'"),
        ("@add(1x, 2)", 5, "malformed number"),
        ("before @{concat('a'", 19, "missing '\\)' for the call to 'concat' \\(opened at position 9\\)"),
        ("before @{ ", 7, "never closed"),
        ("before @{}", 7, "empty expression"),
        ("before @{concat('a') x}", 21, "expected '}'"),
        ("@substring('abc')", 1, "takes 2 to 3 arguments, got 1"),
        ("@pipeline(1)", 1, "takes 0 arguments, got 1"),
        ("@concat()", 1, "takes at least 1 argument, got 0"),
        ("@guid(1, 2)", 1, "takes at most 1 argument, got 2"),
    ],
)
def test_parse_errors_report_the_offset_in_the_value(value: str, position: int, message: str) -> None:
    with pytest.raises(ExpressionError, match=message) as err:
        parse_value(value)
    assert err.value.position == position
    assert f"at position {position}" in str(err.value)


def test_expression_errors_are_usage_errors_with_exit_code_2() -> None:
    with pytest.raises(UsageError) as err:
        parse_value("@concat(")
    assert err.value.exit_code == ExitCode.USAGE
    assert err.value.code == "ExpressionError"


def test_evaluation_errors_point_at_the_failing_call() -> None:
    with pytest.raises(ExpressionError, match="substring") as err:
        ev("@concat('a', substring('abc', 5, 1))")
    assert err.value.position == 13


def test_long_values_are_cut_to_a_window_in_the_message() -> None:
    value = "@concat(" + "'x', " * 200 + "nope"
    with pytest.raises(ExpressionError) as err:
        parse_value(value)
    assert len(str(err.value)) < 300
    assert err.value.text == value


def test_nesting_deeper_than_the_limit_is_an_expression_error_not_a_recursion_error() -> None:
    deep = "@" + "concat(" * (MAX_DEPTH + 5) + "'a'" + ")" * (MAX_DEPTH + 5)
    with pytest.raises(ExpressionError, match="nested more than"):
        parse_value(deep)
    brackets = "json('[]')"
    for _ in range(MAX_DEPTH + 5):
        brackets = f"json('[]')[{brackets}]"
    with pytest.raises(ExpressionError, match="nested more than"):
        parse_value("@" + brackets)


def test_nesting_within_the_limit_parses_and_evaluates() -> None:
    value = "@" + "concat(" * (MAX_DEPTH - 1) + "'a'" + ")" * (MAX_DEPTH - 1)
    assert ev(value) == "a"


def test_long_accessor_chains_evaluate_without_recursion() -> None:
    assert ev("@json('[[[1]]]')" + "[0]" * 3) == 1
    with pytest.raises(ExpressionError, match="cannot index a value of type Integer"):
        ev("@createArray(1)" + "[0]" * 5000)


# --- is_expression / iter_expression_strings / evaluate_json ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("@pipeline().RunId", True),
        ("Run @{pipeline().RunId}", True),
        ("@{x}", True),
        ("@@literal", False),
        ("a @@{escaped}", False),
        (" @notexpr", False),
        ("user@example.com", False),
        ("", False),
    ],
)
def test_is_expression_matches_what_adf_evaluates(value: str, expected: bool) -> None:
    assert is_expression(value) is expected


def test_iter_expression_strings_yields_json_paths_for_every_expression() -> None:
    doc = {
        "name": "p",
        "properties": {
            "activities": [
                {"name": "W", "typeProperties": {"url": "@pipeline().parameters.url", "method": "GET"}},
                {"name": "S", "typeProperties": {"value": {"value": "@utcNow()", "type": "Expression"}}},
            ],
            "odd key": ["plain", "x @{item()}", "@@not"],
        },
    }
    assert list(iter_expression_strings(doc)) == [
        ("$.properties.activities[0].typeProperties.url", "@pipeline().parameters.url"),
        ("$.properties.activities[1].typeProperties.value.value", "@utcNow()"),
        ("$.properties['odd key'][1]", "x @{item()}"),
    ]


def test_iter_expression_strings_starts_from_the_given_path() -> None:
    assert list(iter_expression_strings({"a": "@x()"}, "$.properties")) == [("$.properties.a", "@x()")]


def test_evaluate_json_evaluates_strings_and_expression_objects_recursively() -> None:
    doc = {
        "url": "https://@{pipeline().parameters.host}/x",
        "count": "@pipeline().parameters.n",
        "wrapped": {"value": "@add(pipeline().parameters.n, 1)", "type": "Expression"},
        "list": ["@@at", 3, None, {"inner": "@string(true)"}],
        "secure": {"type": "SecureString", "value": "keep"},
    }
    ctx = EvalContext(parameters={"host": "h", "n": 2})
    assert evaluate_json(doc, ctx) == {
        "url": "https://h/x",
        "count": 2,
        "wrapped": 3,
        "list": ["@at", 3, None, {"inner": "True"}],
        "secure": {"type": "SecureString", "value": "keep"},
    }


def test_evaluated_service_objects_are_plain_dicts() -> None:
    result = ev("@pipeline()", parameters={"a": 1}, system={"RunId": "r"})
    assert type(result) is dict
    assert type(result["parameters"]) is dict
    assert result == {"RunId": "r", "parameters": {"a": 1}, "globalParameters": {}}
