"""Every expression in the corpus of 56 real ADF pipelines parses, uses only known functions, and evaluates
without crashing (evaluation may fail with an ExpressionError: the context here is empty)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cicd_tools.adf.expressions import (
    EvalContext,
    ExpressionError,
    evaluate_value,
    iter_expression_strings,
    parse_value,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "adf-pipelines"
EXPECTED_AT_LEAST = 1100  # the corpus holds 1,172 expression strings (56 files) when this was written


def _corpus_expressions() -> list[tuple[str, str, str]]:
    if not CORPUS.is_dir():
        pytest.skip(f"the ADF pipeline corpus is not present at {CORPUS}")
    found: list[tuple[str, str, str]] = []
    for path in sorted(CORPUS.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
        found.extend((path.name, where, text) for where, text in iter_expression_strings(doc))
    return found


def test_every_corpus_expression_parses_with_only_known_functions() -> None:
    expressions = _corpus_expressions()
    failures: list[str] = []
    unknown: list[str] = []
    for name, where, text in expressions:
        try:
            parsed = parse_value(text)
        except ExpressionError as err:
            failures.append(f"{name} {where}: {err}")
            continue
        assert parsed.kind in ("expression", "interpolation"), (name, where)
        unknown.extend(f"{name} {where}: {fn}" for fn, _ in parsed.unknown_functions)
    assert len(expressions) >= EXPECTED_AT_LEAST, f"checked only {len(expressions)} expressions"
    assert failures == []
    assert unknown == []


def test_every_corpus_expression_evaluates_or_fails_with_an_expression_error() -> None:
    ctx = EvalContext()
    outcomes = {"value": 0, "error": 0}
    for _, _, text in _corpus_expressions():
        try:
            evaluate_value(text, ctx)
            outcomes["value"] += 1
        except ExpressionError:
            outcomes["error"] += 1
    assert outcomes["value"] > 0 and outcomes["error"] > 0, outcomes


def test_a_made_up_function_in_a_pipeline_is_reported_not_a_crash() -> None:
    doc = {"properties": {"activities": [{"name": "W", "typeProperties": {"url": "@fooBar(1)", "n": "x @{barBaz()}"}}]}}
    reported = {where: parse_value(text).unknown_functions for where, text in iter_expression_strings(doc)}
    assert reported == {
        "$.properties.activities[0].typeProperties.url": (("fooBar", 1),),
        "$.properties.activities[0].typeProperties.n": (("barBaz", 4),),
    }
