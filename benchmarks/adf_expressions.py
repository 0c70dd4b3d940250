"""Parse and evaluate every expression of the ADF pipeline corpus repeatedly; print expressions per second.

Run: ``.venv/bin/python benchmarks/adf_expressions.py [CORPUS_DIR] [--seconds S]``. The context supplies
plausible values (declared parameter defaults or typed samples, sample activity outputs); expressions that
still cannot be evaluated (a property the sample output lacks, xpath...) are counted separately.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cicd_tools.adf.expressions import EvalContext, ExpressionError, iter_expression_strings, parse_value
from cicd_tools.adf.expressions.eval import evaluate_template
from cicd_tools.adf.expressions.parser import Template, compile_value

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "adf-pipelines"
_SAMPLES: dict[str, Any] = {
    "string": "sample",
    "securestring": "secret",
    "int": 1,
    "float": 1.5,
    "bool": True,
    "array": ["a", "b"],
    "object": {"name": "sample"},
}
_ACTIVITY_OUTPUT: dict[str, Any] = {
    "firstRow": {"name": "sample", "value": 1},
    "value": [{"name": "sample"}],
    "count": 1,
    "childItems": [{"name": "file.csv", "type": "File"}],
    "exists": True,
    "runId": "00000000-0000-0000-0000-000000000001",
    "pipelineRunId": "00000000-0000-0000-0000-000000000002",
    "status": "Succeeded",
    "Response": "<root/>",
}


def _pipeline_properties(doc: Any) -> Iterator[dict[str, Any]]:
    """Every object that looks like pipeline properties (it has ``activities``), ARM templates included."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("activities"), list):
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _declared(decls: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if isinstance(decls, dict):
        for name, decl in decls.items():
            decl = decl if isinstance(decl, dict) else {}
            default = decl.get("defaultValue")
            values[name] = default if default is not None else _SAMPLES.get(str(decl.get("type", "")).lower(), "x")
    return values


def build_context(doc: Any, expressions: list[str]) -> EvalContext:
    """A context with every declared parameter/variable and a sample output for every referenced activity."""
    ctx = EvalContext(
        system={
            "RunId": "run-1",
            "Pipeline": "pipeline",
            "DataFactory": "factory",
            "TriggerTime": "2024-05-01T06:00:00Z",
        },
        now=lambda: datetime(2024, 5, 1, 6, 0, tzinfo=UTC),
        items=[{"name": "sample", "value": 1}],
    )
    params: dict[str, Any] = {}
    for props in _pipeline_properties(doc):
        params.update(_declared(props.get("parameters")))
        ctx.variables.update(_declared(props.get("variables")))
    globals_: dict[str, Any] = {}
    for text in expressions:
        try:
            parsed = parse_value(text)
        except ExpressionError:
            continue
        for ref in parsed.references:
            if ref.kind == "activity":
                ctx.activity_outputs.setdefault(ref.name, dict(_ACTIVITY_OUTPUT))
            elif ref.kind == "globalParameter":
                globals_.setdefault(ref.name, "sample")
            elif ref.kind == "parameter":
                params.setdefault(ref.name, "sample")
            elif ref.kind == "variable":
                ctx.variables.setdefault(ref.name, "sample")
    ctx.parameters, ctx.global_parameters = params, globals_
    return ctx


def load(corpus: Path) -> list[tuple[str, EvalContext]]:
    """``(expression, context)`` for every expression string of every pipeline in ``corpus``."""
    work: list[tuple[str, EvalContext]] = []
    for path in sorted(corpus.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
        expressions = [text for _, text in iter_expression_strings(doc)]
        ctx = build_context(doc, expressions)
        work.extend((text, ctx) for text in expressions)
    return work


def _rate(seconds: float, work: list[tuple[str, EvalContext]], step: Callable[[str, EvalContext], object]) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for text, ctx in work:
            step(text, ctx)
        done += len(work)
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (three measurements)")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"corpus folder not found: {args.corpus}", file=sys.stderr)
        return 2
    work = load(args.corpus)
    parse_uncached: Callable[[str], Template] = compile_value.__wrapped__
    failures: collections.Counter[str] = collections.Counter()
    for text, ctx in work:
        try:
            evaluate_template(parse_uncached(text), ctx)
        except ExpressionError as err:
            failures[err.reason.split(":")[0][:70]] += 1

    def parse_only(text: str, ctx: EvalContext) -> object:
        return parse_uncached(text)

    def parse_and_evaluate(text: str, ctx: EvalContext) -> object:
        try:
            return evaluate_template(parse_uncached(text), ctx)
        except ExpressionError:
            return None

    def cached(text: str, ctx: EvalContext) -> object:
        try:
            return evaluate_template(compile_value(text), ctx)
        except ExpressionError:
            return None

    parse_rate = _rate(args.seconds, work, parse_only)
    full_rate = _rate(args.seconds, work, parse_and_evaluate)
    cached_rate = _rate(args.seconds, work, cached)
    print(f"corpus: {args.corpus} ({len(work)} expression strings)")
    print(f"evaluation failures with sample context: {sum(failures.values())} of {len(work)}")
    for reason, count in failures.most_common(8):
        print(f"  {count:5d}  {reason}")
    print(f"parse only:             {parse_rate:12,.0f} expressions/s")
    print(f"parse + evaluate:       {full_rate:12,.0f} expressions/s")
    print(f"evaluate (parse cached):{cached_rate:12,.0f} expressions/s")
    print(f"ratio parse+evaluate / parse only: {full_rate / parse_rate:.2f}")
    print(f"ratio cached evaluate / parse+evaluate: {cached_rate / full_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
