"""Property tests: the parser and evaluator raise nothing but ExpressionError, whatever the input."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cicd_tools.adf.expressions import EvalContext, ExpressionError, evaluate_value, parse_value
from cicd_tools.adf.expressions.registry import FUNCTIONS
from cicd_tools.adf.expressions.types import FunctionSpec

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SYNTAX = "@{}()[]'.,?- \n\t0123456789eE$_abcxyz"

random_text = st.text(max_size=200)
expression_like = st.text(alphabet=SYNTAX, max_size=200)
values = st.one_of(random_text, random_text.map("@".__add__), expression_like, expression_like.map("@".__add__))


def _check(value: str) -> None:
    try:
        parse_value(value)
    except ExpressionError as err:
        assert err.position is None or 0 <= err.position <= len(value)


@FUZZ
@given(values)
def test_parse_value_raises_only_expression_errors(value: str) -> None:
    _check(value)


@FUZZ
@given(st.integers(min_value=0, max_value=5000), st.sampled_from(["concat(", "[", "createArray(", "@{"]))
def test_deep_nesting_never_overflows_the_python_stack(depth: int, opener: str) -> None:
    _check("@" + opener * depth)
    _check("x @{" + "concat(" * depth + "'a'" + ")" * depth + "}")


literals = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f) if "e" not in repr(f) else "1.5"),
    st.text(max_size=12).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.sampled_from(["true", "false", "null", "'2018-03-15T13:00:00Z'", "'yyyy-MM-dd'", "'Day'", "'UTC'"]),
)


def _call(children: Any) -> Any:
    """A call to a real function with an argument count it accepts, so evaluation reaches the implementation."""

    def build(spec: FunctionSpec) -> Any:
        most = spec.max_args if spec.max_args is not None else spec.min_args + 3
        args = st.lists(children, min_size=spec.min_args, max_size=most)
        return args.map(lambda a: f"{spec.name}({', '.join(a)})")

    return st.sampled_from(sorted(FUNCTIONS.values(), key=lambda f: f.name)).flatmap(build)


expressions = st.recursive(literals, _call, max_leaves=12)


@FUZZ
@given(expressions)
def test_evaluating_random_calls_raises_only_expression_errors(expression: str) -> None:
    ctx = EvalContext(parameters={"p": 1}, variables={"v": "x"}, items=[{"a": 1}], activity_outputs={"A": {}})
    with contextlib.suppress(ExpressionError):
        evaluate_value("@" + expression, ctx)
