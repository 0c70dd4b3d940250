"""ADF expression functions: the documented examples of each family, plus the .NET edge behaviours.

Where the Microsoft page's printed result is a typo (dropped characters, ``https`` for ``http``), the test
states the value the function actually computes and says so in a comment.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from cicd_tools.adf.expressions import EvalContext, ExpressionError, evaluate_value, render_string


def ev(value: str, **ctx: Any) -> Any:
    return evaluate_value("@" + value, EvalContext(**ctx))


def check(cases: list[tuple[str, Any]]) -> None:
    for expression, expected in cases:
        result = ev(expression)
        assert result == expected, expression
        assert type(result) is type(expected), expression


# --- string functions -----------------------------------------------------------------------------------


def test_documented_string_examples() -> None:
    check(
        [
            ("concat('Hello', 'World')", "HelloWorld"),
            ("endsWith('hello world', 'world')", True),
            ("endsWith('hello world', 'universe')", False),
            ("indexOf('hello world', 'world')", 6),
            ("lastIndexOf('hello world', 'world')", 6),
            ("replace('the old string', 'old', 'new')", "the new string"),
            ("split('a_b_c', '_')", ["a", "b", "c"]),
            ("startsWith('hello world', 'hello')", True),
            ("startsWith('hello world', 'greetings')", False),
            ("substring('hello world', 6, 5)", "world"),
            ("toLower('Hello World')", "hello world"),
            ("toUpper('Hello World')", "HELLO WORLD"),
            ("trim(' Hello World  ')", "Hello World"),
        ]
    )


def test_index_of_starts_with_and_ends_with_ignore_case_but_replace_does_not() -> None:
    check(
        [
            ("indexOf('hello world', 'WORLD')", 6),
            ("lastIndexOf('abcABC', 'a')", 3),
            ("indexOf('hello', 'z')", -1),
            ("startsWith('Hello', 'hE')", True),
            ("endsWith('Hello', 'LO')", True),
            ("replace('aAa', 'a', 'b')", "bAb"),
        ]
    )


def test_guid_formats_follow_dotnet() -> None:
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", ev("guid()"))
    assert re.fullmatch(r"[0-9a-f]{32}", ev("guid('N')"))
    assert re.fullmatch(r"\([0-9a-f-]{36}\)", ev("guid('P')"))  # documented example shape
    assert re.fullmatch(r"\{[0-9a-f-]{36}\}", ev("guid('B')"))
    assert re.fullmatch(
        r"\{0x[0-9a-f]{8},0x[0-9a-f]{4},0x[0-9a-f]{4},\{(0x[0-9a-f]{2},){7}0x[0-9a-f]{2}\}\}", ev("guid('X')")
    )
    with pytest.raises(ExpressionError, match="guid format must be one of"):
        ev("guid('Q')")


def test_concat_renders_non_strings_and_joins_arrays() -> None:
    check(
        [
            ("concat('n=', 1, ' ok=', true, ' f=', 2.5, ' null=', null)", "n=1 ok=True f=2.5 null="),
            ("concat(createArray(1), createArray(2, 3))", [1, 2, 3]),
        ]
    )
    with pytest.raises(ExpressionError, match="all strings or all arrays"):
        ev("concat('a', createArray(1))")


def test_substring_outside_the_string_fails_like_dotnet() -> None:
    with pytest.raises(ExpressionError, match="must lie within the string of length 3"):
        ev("substring('abc', 2, 5)")
    assert ev("substring('abcdef', 2)") == "cdef"


def test_split_with_an_empty_delimiter_returns_the_whole_string() -> None:
    assert ev("split('abc', '')") == ["abc"]


def test_string_functions_reject_non_strings() -> None:
    with pytest.raises(ExpressionError, match="toLower text must be a String, got Integer"):
        ev("toLower(1)")


# --- collection functions ---------------------------------------------------------------------------------


def test_documented_collection_examples() -> None:
    check(
        [
            ("contains('hello world', 'world')", True),
            ("contains('hello world', 'universe')", False),
            ("empty('')", True),
            ("empty('abc')", False),
            ("first('hello')", "h"),
            ("first(createArray(0, 1, 2))", 0),
            ("intersection(createArray(1, 2, 3), createArray(101, 2, 1, 10), createArray(6, 8, 1, 2))", [1, 2]),
            ("join(createArray('a', 'b', 'c'), '.')", "a.b.c"),
            ("last('abcd')", "d"),
            ("last(createArray(0, 1, 2, 3))", 3),
            ("length('abcd')", 4),
            ("length(createArray(0, 1, 2, 3))", 4),
            ("skip(createArray(0, 1, 2, 3), 1)", [1, 2, 3]),
            ("take('abcde', 3)", "abc"),
            ("take(createArray(0, 1, 2, 3, 4), 3)", [0, 1, 2]),
            ("union(createArray(1, 2, 3), createArray(1, 2, 10, 101))", [1, 2, 3, 10, 101]),
        ]
    )


def test_contains_is_case_sensitive_and_checks_array_items_and_object_keys() -> None:
    check(
        [
            ("contains('hello world', 'WORLD')", False),
            ("contains(createArray(1, 'a'), 'a')", True),
            ("contains(createArray(1, 'a'), 'A')", False),
            ("contains(json('{\"k\": 1}'), 'k')", True),
        ]
    )


def test_empty_treats_null_and_empty_collections_as_empty() -> None:
    check(
        [
            ("empty(null)", True),
            ("empty(createArray(1))", False),
            ("empty(json('[]'))", True),
            ("empty(json('{}'))", True),
        ]
    )


def test_object_union_and_intersection_keep_the_last_value() -> None:
    a, b = 'json(\'{"x": 1, "y": 2}\')', 'json(\'{"y": 3, "z": 4}\')'
    check([(f"union({a}, {b})", {"x": 1, "y": 3, "z": 4}), (f"intersection({a}, {b})", {"y": 3})])


def test_first_and_last_of_empty_collections_are_null() -> None:
    assert ev("first('')") is None
    assert ev("last(json('[]'))") is None


def test_join_renders_items_like_interpolation() -> None:
    assert ev("join(createArray(1, true, null, 'x'), ',')") == "1,True,,x"


def test_range_matches_the_documented_examples_and_is_bounded() -> None:
    check([("range(1, 4)", [1, 2, 3, 4]), ("range(0, 10)", list(range(10)))])
    with pytest.raises(ExpressionError, match="range count must be between 0 and 100000"):
        ev("range(0, 100001)")


# --- logical functions ------------------------------------------------------------------------------------


def test_documented_logical_examples() -> None:
    check(
        [
            ("and(true, true)", True),
            ("and(false, true)", False),
            ("and(false, false)", False),
            ("and(equals(1, 1), equals(2, 2))", True),
            ("and(equals(1, 1), equals(1, 2))", False),
            ("and(equals(1, 2), equals(1, 3))", False),
            ("equals(true, 1)", True),
            ("equals('abc', 'abcd')", False),
            ("greater(10, 5)", True),
            ("greater('apple', 'banana')", False),
            ("greaterOrEquals(5, 5)", True),
            ("greaterOrEquals('apple', 'banana')", False),
            ("if(equals(1, 1), 'yes', 'no')", "yes"),
            ("less(5, 10)", True),
            ("less('banana', 'apple')", False),
            ("lessOrEquals(10, 10)", True),
            ("lessOrEquals('apply', 'apple')", False),
            ("not(false)", True),
            ("not(true)", False),
            ("not(equals(1, 2))", True),
            ("not(equals(1, 1))", False),
            ("or(true, false)", True),
            ("or(false, false)", False),
            ("or(equals(1, 1), equals(1, 2))", True),
            ("or(equals(1, 2), equals(1, 3))", False),
            ("coalesce(null, true, false)", True),
            ("coalesce(null, 'hello', 'world')", "hello"),
        ]
    )
    assert ev("coalesce(null, null, null)") is None


def test_equals_is_deep_numeric_and_case_sensitive() -> None:
    check(
        [
            ("equals(1, 1.0)", True),
            ("equals('a', 'A')", False),
            ("equals('1', 1)", False),
            ("equals(createArray(1, 'a'), json('[1, \"a\"]'))", True),
            ("equals(json('{\"a\": [1]}'), json('{\"a\": [1]}'))", True),
            ("equals(null, '')", True),  # comparisons treat null as '' (workflow-language rule)
        ]
    )


def test_logical_functions_want_booleans() -> None:
    with pytest.raises(ExpressionError, match="and argument must be a Boolean, got String"):
        ev("and(true, 'true')")
    with pytest.raises(ExpressionError, match="if expression must be a Boolean"):
        ev("if(1, 'a', 'b')")


def test_comparisons_refuse_mixed_types() -> None:
    with pytest.raises(ExpressionError, match="compares two numbers or two strings"):
        ev("less(1, 'a')")


def test_if_evaluates_only_the_branch_it_returns() -> None:
    # Short-circuit, as ADF's .NET runtime: microsoft/data-factory-testing-framework#66 (AZURE_FACTS.md §9).
    assert ev("if(true, 'a', variables('missing'))") == "a"
    with pytest.raises(ExpressionError, match="variable 'missing'"):
        ev("if(false, 'a', variables('missing'))")


@pytest.mark.parametrize("text", ["and(true, true, true)", "or(false, false, true)", "and(true)", "or()"])
def test_and_or_take_exactly_two_arguments(text: str) -> None:
    # ADF: "function 'and' does not accept 3 argument(s)" (MicrosoftDocs/azure-docs#54944, #55549).
    with pytest.raises(ExpressionError, match="takes 2 arguments"):
        ev(text)


# --- conversion functions ---------------------------------------------------------------------------------


def test_documented_conversion_examples() -> None:
    check(
        [
            ("array('hello')", ["hello"]),
            ("base64('hello')", "aGVsbG8="),
            ("base64ToString('aGVsbG8=')", "hello"),
            ("binary('hello')", "0110100001100101011011000110110001101111"),
            ("bool(1)", True),
            ("bool(0)", False),
            ("createArray('h', 'e', 'l', 'l', 'o')", ["h", "e", "l", "l", "o"]),
            ("dataUri('hello')", "data:text/plain;charset=utf-8;base64,aGVsbG8="),
            ("dataUriToString('data:text/plain;charset=utf-8;base64,aGVsbG8=')", "hello"),
            ("decodeBase64('aGVsbG8=')", "hello"),
            ("float('10.333')", 10.333),
            ("int('10')", 10),
            ("json('[1, 2, 3]')", [1, 2, 3]),
            ('json(\'{"fullName": "Sophia Owen"}\')', {"fullName": "Sophia Owen"}),
            ("string(10)", "10"),
            # The page prints "http%3A..." / "https://..." for these; the functions keep the scheme as given.
            ("encodeUriComponent('https://contoso.com')", "https%3A%2F%2Fcontoso.com"),
            ("uriComponent('https://contoso.com')", "https%3A%2F%2Fcontoso.com"),
            ("decodeUriComponent('http%3A%2F%2Fcontoso.com')", "http://contoso.com"),
            ("uriComponentToString('http%3A%2F%2Fcontoso.com')", "http://contoso.com"),
        ]
    )


def test_binary_results_are_bit_strings_of_the_decoded_bytes() -> None:
    hello_bits = "0110100001100101011011000110110001101111"
    check(
        [
            ("base64ToBinary('aGVsbG8=')", hello_bits),
            ("dataUriToBinary('data:text/plain;charset=utf-8;base64,aGVsbG8=')", hello_bits),
            ("decodeDataUri('data:text/plain;charset=utf-8;base64,aGVsbG8=')", hello_bits),
            ("uriComponentToBinary('hello')", hello_bits),
        ]
    )


def test_string_renders_booleans_floats_and_objects_like_adf() -> None:
    check(
        [
            ("string(true)", "True"),
            ("string(null)", ""),
            ("string(2.5)", "2.5"),
            ('string(json(\'{"name": "Sophie Owen"}\'))', '{"name":"Sophie Owen"}'),
        ]
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [(10.0, "10"), (2.5, "2.5"), (1e15, "1E+15"), (123456789012345.0, "123456789012345"), (0.0001, "0.0001"),
     (1e-05, "1E-05"), (-1.5e-07, "-1.5E-07"), (1.2345678901234567e20, "1.2345678901234567E+20")],
)  # fmt: skip
def test_floats_render_like_dotnet_double_to_string(value: float, text: str) -> None:
    assert render_string(value) == text


def test_int_float_and_bool_parse_strings_strictly() -> None:
    check([("int(' -7 ')", -7), ("int(3.0)", 3), ("int(true)", 1), ("float('1e3')", 1000.0), ("bool('TRUE')", True)])
    for bad in ("int('10.5')", "int('abc')", "float('ten')", "bool('yes')", "int(null)"):
        with pytest.raises(ExpressionError, match="cannot convert"):
            ev(bad)


def test_json_of_null_is_an_empty_object_and_bad_json_fails() -> None:
    assert ev("json(null)") == {}
    with pytest.raises(ExpressionError, match="json cannot parse"):
        ev("json('{bad')")


def test_xml_and_xpath_parse_but_say_they_are_not_evaluated_locally() -> None:
    with pytest.raises(ExpressionError, match=r"xml\(\) is valid ADF but not supported by the local evaluator"):
        ev("xml('<a/>')")


def test_invalid_base64_is_reported() -> None:
    with pytest.raises(ExpressionError, match="not valid base64"):
        ev("base64ToString('***')")


# --- math functions ---------------------------------------------------------------------------------------


def test_documented_math_examples() -> None:
    check(
        [
            ("add(1, 1.5)", 2.5),
            ("div(10, 5)", 2),
            ("div(11, 5)", 2),
            ("max(1, 2, 3)", 3),
            ("max(createArray(1, 2, 3))", 3),
            ("min(1, 2, 3)", 1),
            ("min(createArray(1, 2, 3))", 1),
            ("mod(3, 2)", 1),
            ("mul(1, 2)", 2),
            ("mul(1.5, 2)", 3.0),
            ("sub(10.3, .3)", 10.0),
        ]
    )
    assert render_string(ev("sub(10.3, .3)")) == "10"  # documented result: 10


def test_integer_division_and_remainder_truncate_toward_zero_like_dotnet() -> None:
    check([("div(-7, 2)", -3), ("mod(-7, 2)", -1), ("mod(7, -2)", 1), ("div(7.0, 2)", 3.5), ("mod(7.5, 2)", 1.5)])


def test_division_by_zero_and_overflow_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="div by zero"):
        ev("div(1, 0)")
    with pytest.raises(ExpressionError, match="mod by zero"):
        ev("mod(1, 0)")
    with pytest.raises(ExpressionError, match="overflows a 64-bit integer"):
        ev("mul(9223372036854775807, 2)")


def test_math_refuses_booleans_and_strings() -> None:
    with pytest.raises(ExpressionError, match="add argument must be an Integer or a Float, got Boolean"):
        ev("add(true, 1)")
    with pytest.raises(ExpressionError, match="got String"):
        ev("add('1', 1)")


def test_rand_stays_in_the_half_open_range() -> None:
    assert {ev("rand(1, 5)") for _ in range(200)} <= {1, 2, 3, 4}
    with pytest.raises(ExpressionError, match="must be less than maxValue"):
        ev("rand(5, 5)")
