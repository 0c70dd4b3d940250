"""Parser for ADF expressions: JSON string values to templates (literal, whole expression, interpolation).

Grammar (the language has no operators; everything is a function call)::

    expression := primary ( '.' name | '?.' name | '[' expression ']' | '?[' expression ']' )*
    primary    := 'string' | number | true | false | null | name '(' [ expression (',' expression)* ] ')'

Strings use single quotes, ``''`` is a quote, backslash is an ordinary character. Function names are
case-insensitive. The parser never raises anything but ``ExpressionError`` and bounds nesting depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from cicd_tools.adf.expressions.registry import FUNCTIONS
from cicd_tools.adf.expressions.types import ExpressionError, ParsedValue, Reference

MAX_DEPTH = 100  # nesting of calls and brackets; deeper input is reported, never a RecursionError

_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"(?:[^\W\d]|\$)[\w$]*")
_WHITESPACE = " \t\r\n"
_KEYWORDS: dict[str, Any] = {"true": True, "false": False, "null": None}

# pipeline() properties, spelled as ADF documents them; lookups ignore case.
SYSTEM_PROPERTIES: dict[str, str] = {
    name.lower(): name
    for name in (
        "RunId",
        "Pipeline",
        "DataFactory",
        "TriggerTime",
        "TriggerName",
        "TriggerType",
        "TriggerId",
        "GroupId",
        "TriggeredByPipelineName",
        "TriggeredByPipelineRunId",
    )
}


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal: string, number, boolean or null."""

    value: Any
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    """A function call; ``key`` is the lower-case name used for lookups."""

    name: str
    key: str
    args: tuple[Node, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Step:
    """One accessor: ``.name`` / ``?.name`` (``name`` set) or ``[expr]`` / ``?[expr]`` (``index`` set)."""

    name: str | None
    index: Node | None
    null_safe: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Access:
    """A primary followed by accessors, kept flat so evaluation is a loop, not recursion."""

    base: Node
    steps: tuple[Step, ...]
    pos: int


Node = Lit | Call | Access


@dataclass(frozen=True)
class Template:
    """A compiled JSON string value: what ``parse_value`` reports plus what evaluation needs."""

    parsed: ParsedValue
    literal: str = ""  # kind "literal": the string ADF produces (escapes resolved)
    root: Node | None = None  # kind "expression"
    parts: tuple[str | Node, ...] = ()  # kind "interpolation": text and expressions, in order


class _Parser:
    """Recursive descent over ``text`` from ``start``; collects references and unknown functions."""

    def __init__(self, text: str, start: int, refs: list[Reference], unknown: list[tuple[str, int]]) -> None:
        self.text = text
        self.i = start
        self.n = len(text)
        self.depth = 0
        self.refs = refs
        self.unknown = unknown

    def fail(self, message: str, position: int) -> ExpressionError:
        return ExpressionError(message, position=position, text=self.text)

    def skip_ws(self) -> None:
        while self.i < self.n and self.text[self.i] in _WHITESPACE:
            self.i += 1

    def peek(self) -> str:
        return self.text[self.i] if self.i < self.n else ""

    def parse_expr(self) -> Node:
        self.skip_ws()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expression nested more than {MAX_DEPTH} levels deep", self.i)
        node = self._primary()
        steps: list[Step] = []
        while True:
            self.skip_ws()
            c = self.peek()
            if c == "?":
                nxt = self.text[self.i + 1] if self.i + 1 < self.n else ""
                if nxt not in (".", "["):  # not a substring test: "" is in every string
                    raise self.fail("expected '.' or '[' after '?'", self.i)
                self.i += 1
                steps.append(self._member(True) if nxt == "." else self._index(True))
            elif c == ".":
                steps.append(self._member(False))
            elif c == "[":
                steps.append(self._index(False))
            else:
                break
        self.depth -= 1
        if not steps:
            return node
        access = Access(node, tuple(steps), node.pos)
        self._note_pipeline_reference(access)
        return access

    def _member(self, null_safe: bool) -> Step:
        pos = self.i
        self.i += 1  # the '.'
        self.skip_ws()
        match = _NAME.match(self.text, self.i)
        if match is None:
            raise self.fail("expected a property name after '.'", self.i)
        self.i = match.end()
        return Step(match.group(), None, null_safe, pos)

    def _index(self, null_safe: bool) -> Step:
        pos = self.i
        self.i += 1  # the '['
        index = self.parse_expr()
        self.skip_ws()
        if self.peek() != "]":
            raise self.fail(f"expected ']' to close '[' at position {pos}", self.i)
        self.i += 1
        return Step(None, index, null_safe, pos)

    def _primary(self) -> Node:
        pos = self.i
        c = self.peek()
        if not c:
            raise self.fail("expected a value or a function call, found the end of the text", pos)
        if c == "'":
            return Lit(self._string(), pos)
        if c.isdigit() or c in "-.":
            return Lit(self._number(), pos)
        match = _NAME.match(self.text, pos)
        if match is None:
            raise self.fail(f"expected a value or a function call, found {c!r}", pos)
        name = match.group()
        self.i = match.end()
        self.skip_ws()
        if self.peek() == "(":
            return self._call(name, pos)
        if name.lower() in _KEYWORDS:
            return Lit(_KEYWORDS[name.lower()], pos)
        raise self.fail(f"expected '(' after function name {name!r}", self.i)

    def _string(self) -> str:
        start = self.i
        self.i += 1
        chunks: list[str] = []
        while True:
            end = self.text.find("'", self.i)
            if end < 0:
                raise self.fail("unterminated string literal", start)
            chunks.append(self.text[self.i : end])
            if end + 1 < self.n and self.text[end + 1] == "'":  # '' is a quote
                chunks.append("'")
                self.i = end + 2
                continue
            self.i = end + 1
            return "".join(chunks)

    def _number(self) -> int | float:
        pos = self.i
        match = _NUMBER.match(self.text, pos)
        if match is None:
            raise self.fail(f"unexpected character {self.text[pos]!r}", pos)
        literal = match.group()
        self.i = match.end()
        if self.i < self.n and (self.text[self.i].isalnum() or self.text[self.i] in "_$."):
            raise self.fail(f"malformed number {literal + self.text[self.i]!r}", pos)
        if "." in literal or "e" in literal or "E" in literal:
            value = float(literal)
            if value in (float("inf"), float("-inf")):
                raise self.fail(f"number {literal} is out of range", pos)
            return value
        if len(literal.lstrip("-")) > 19 or not -(2**63) <= int(literal) <= 2**63 - 1:
            raise self.fail(f"integer {literal} does not fit in 64 bits", pos)
        return int(literal)

    def _call(self, name: str, pos: int) -> Call:
        self.i += 1  # the '('
        args: list[Node] = []
        self.skip_ws()
        if self.peek() == ")":
            self.i += 1
        else:
            while True:
                args.append(self.parse_expr())
                self.skip_ws()
                c = self.peek()
                if c == ",":
                    self.i += 1
                elif c == ")":
                    self.i += 1
                    break
                elif not c:
                    raise self.fail(f"missing ')' for the call to {name!r} (opened at position {pos})", self.i)
                else:
                    raise self.fail(f"expected ',' or ')' in the call to {name!r}, found {c!r}", self.i)
        call = Call(name, name.lower(), tuple(args), pos)
        self._check_call(call)
        return call

    def _check_call(self, call: Call) -> None:
        spec = FUNCTIONS.get(call.key)
        if spec is None:
            self.unknown.append((call.name, call.pos))
            return
        count = len(call.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            if spec.max_args is None:
                expected, bound = f"at least {spec.min_args}", spec.min_args
            elif spec.min_args == spec.max_args:
                expected, bound = str(spec.min_args), spec.min_args
            elif spec.min_args == 0:
                expected, bound = f"at most {spec.max_args}", spec.max_args
            else:
                expected, bound = f"{spec.min_args} to {spec.max_args}", spec.max_args
            plural = "" if bound == 1 else "s"
            raise self.fail(f"function '{spec.name}' takes {expected} argument{plural}, got {count}", call.pos)
        literal = call.args[0].value if call.args and isinstance(call.args[0], Lit) else None
        if call.key == "activity" and isinstance(literal, str):
            self.refs.append(Reference("activity", literal, call.pos))
        elif call.key == "variables" and isinstance(literal, str):
            self.refs.append(Reference("variable", literal, call.pos))
        elif call.key == "item":
            self.refs.append(Reference("item", "", call.pos))

    def _note_pipeline_reference(self, access: Access) -> None:
        base = access.base
        if not (isinstance(base, Call) and base.key == "pipeline"):
            return
        names = [_static_name(step) for step in access.steps[:2]]
        first = names[0]
        if first is None:
            return
        low = first.lower()
        if low in ("parameters", "globalparameters"):
            if len(names) > 1 and names[1] is not None:
                kind: Literal["parameter", "globalParameter"] = (
                    "parameter" if low == "parameters" else "globalParameter"
                )
                self.refs.append(Reference(kind, names[1], base.pos))
            return
        self.refs.append(Reference("system", SYSTEM_PROPERTIES.get(low, first), base.pos))


def _static_name(step: Step) -> str | None:
    """The property a step reads when it is known without evaluating anything."""
    if step.name is not None:
        return step.name
    if isinstance(step.index, Lit) and isinstance(step.index.value, str):
        return step.index.value
    return None


def _expression_template(value: str) -> Template:
    refs: list[Reference] = []
    unknown: list[tuple[str, int]] = []
    parser = _Parser(value, 1, refs, unknown)
    root = parser.parse_expr()
    parser.skip_ws()
    if parser.i < parser.n:
        raise parser.fail(f"unexpected {parser.peek()!r} after the end of the expression", parser.i)
    parsed = ParsedValue("expression", value, tuple(refs), tuple(unknown))
    return Template(parsed, root=root)


def _interpolation_template(value: str) -> Template:
    refs: list[Reference] = []
    unknown: list[tuple[str, int]] = []
    parts: list[str | Node] = []
    text: list[str] = []
    i = 0
    while True:
        j = value.find("@{", i)
        if j < 0:
            text.append(value[i:])
            break
        if j > i and value[j - 1] == "@":  # '@@{' is an escaped, literal '@{'
            text.append(value[i : j - 1] + "@{")
            i = j + 2
            continue
        text.append(value[i:j])
        if any(text):
            parts.append("".join(text))
        text = []
        parser = _Parser(value, j + 2, refs, unknown)
        parser.skip_ws()
        if not parser.peek():
            raise parser.fail("'@{' is never closed with '}'", j)
        if parser.peek() == "}":
            raise parser.fail("empty expression '@{}'", j)
        parts.append(parser.parse_expr())
        parser.skip_ws()
        if parser.peek() != "}":
            if parser.i >= parser.n:
                raise parser.fail("'@{' is never closed with '}'", j)
            raise parser.fail(f"expected '}}' to close '@{{' at position {j}, found {parser.peek()!r}", parser.i)
        i = parser.i + 1
    if any(text):
        parts.append("".join(text))
    if not any(not isinstance(part, str) for part in parts):
        return Template(ParsedValue("literal", value), literal="".join(p for p in parts if isinstance(p, str)))
    parsed = ParsedValue("interpolation", value, tuple(refs), tuple(unknown))
    return Template(parsed, parts=tuple(parts))


@lru_cache(maxsize=8192)
def compile_value(value: str) -> Template:
    """Compile a JSON string value (cached: pipelines repeat the same strings). Raises: ExpressionError."""
    if "@" not in value:
        return Template(ParsedValue("literal", value), literal=value)
    if value.startswith("@@"):
        return Template(ParsedValue("literal", value), literal=value[1:])
    if value.startswith("@") and not value.startswith("@{"):
        return _expression_template(value)
    return _interpolation_template(value)


def has_expression(value: str) -> bool:
    """True when ``value`` is a whole expression or holds an unescaped ``@{`` (cheap, no parsing)."""
    if not value:
        return False
    if value[0] == "@":
        return not value.startswith("@@")
    j = value.find("@{")
    while j >= 0:
        if j == 0 or value[j - 1] != "@":
            return True
        j = value.find("@{", j + 2)
    return False
