"""Types shared by the ADF expression modules: errors, references, the evaluation context, function specs.

``cicd_tools.adf.expressions`` re-exports the public ones; import from there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cicd_tools.support.errors import UsageError

_EXCERPT = 60  # characters of context either side of the position when the text is long


def _excerpt(text: str, position: int | None) -> str:
    """The text, or for long texts a window around ``position``, for error messages."""
    if len(text) <= 2 * _EXCERPT + 20:
        return repr(text)
    at = position if position is not None else 0
    start, end = max(0, at - _EXCERPT), min(len(text), at + _EXCERPT)
    return ("…" if start else "") + repr(text[start:end]) + ("…" if end < len(text) else "")


class ExpressionError(UsageError):
    """An expression does not parse or cannot be evaluated; ``position`` is a 0-based offset in the text."""

    default_hint = "Fix the expression at the position shown; strings take single quotes and '' for a quote."

    def __init__(self, message: str, *, position: int | None = None, text: str | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        # Long values (SQL scripts, JSON bodies) are cut to a window so the message stays readable.
        shown = f" in {_excerpt(text, position)}" if text is not None else ""
        super().__init__(f"{message}{where}{shown}", code="ExpressionError")
        self.position = position
        self.text = text
        self.reason = message  # the message without position and text, for tools that place it themselves


class EvaluationLimitError(ExpressionError):
    """An expression would build a value past the evaluation budget (``expressions.budget``)."""

    default_hint = ("The local evaluator's limits are listed in docs/limits.md (\"Input limits and output files\");"
                    " no flag raises them.")


class UnknownFunctionError(ExpressionError):
    """A function name that ADF does not have (raised at evaluation; the parser only records it)."""

    default_hint = "Check the name against the ADF expression function list (names ignore case)."


ReferenceKind = Literal["activity", "parameter", "globalParameter", "variable", "item", "system"]


@dataclass(frozen=True)
class Reference:
    """Something an expression reads: ``activity('A')``, ``pipeline().parameters.p``, ``variables('v')``..."""

    kind: ReferenceKind
    name: str  # activity/parameter/variable name; for "system" the pipeline() property (RunId...); "" for item()
    position: int  # offset in the whole value text (where the call that reads it starts)


@dataclass(frozen=True)
class ParsedValue:
    """A JSON string value as ADF sees it: a literal, one whole expression, or an interpolation."""

    kind: Literal["literal", "expression", "interpolation"]
    text: str
    references: tuple[Reference, ...] = ()
    unknown_functions: tuple[tuple[str, int], ...] = ()  # (name, position)


@dataclass(frozen=True)
class ActivityResult:
    """What ``activity('A')`` exposes when a runner knows more than the output (status, error)."""

    output: Any = None
    status: str | None = None  # Succeeded | Failed | Skipped ...
    error: Any = None  # {"errorCode", "message", "failureType", "target"} when it failed


@dataclass
class EvalContext:
    """Everything an expression can read. Mutable so the runner can update variables/outputs as it goes."""

    parameters: Mapping[str, Any] = field(default_factory=dict)
    global_parameters: Mapping[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    # activity name -> its output object, or an ActivityResult for output + status + error
    activity_outputs: dict[str, Any] = field(default_factory=dict)
    items: list[Any] = field(default_factory=list)  # ForEach item stack; item() is the last
    system: dict[str, Any] = field(default_factory=dict)  # RunId, Pipeline, DataFactory, TriggerTime, ...
    now: Callable[[], datetime] | None = None  # injectable clock for utcNow() (tz-aware UTC)


def lookup_property(obj: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """``(found, value)`` for property ``name``: the exact name first, then the first match ignoring case."""
    if name in obj:
        return True, obj[name]
    low = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == low:
            return True, value
    return False, None


class AdfObject(dict[str, Any]):
    """An object the service provides (``pipeline()``, ``activity('A')``); properties match ignoring case."""

    def lookup(self, name: str) -> tuple[bool, Any]:
        """``(found, value)`` for ``name``, exact match first, then ignoring case."""
        return lookup_property(self, name)


class FunctionFailure(Exception):
    """Raised by a function implementation; the evaluator adds the call's position and the text."""


class Env:
    """What function implementations may read: the context and the clock."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: EvalContext) -> None:
        self.ctx = ctx

    def now(self) -> datetime:
        """The current time (tz-aware UTC), from the injected clock when there is one."""
        value = self.ctx.now() if self.ctx.now is not None else datetime.now(UTC)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Impl = Callable[[Sequence[Any], Env], Any]


@dataclass(frozen=True)
class FunctionSpec:
    """One expression function: its documented name, how many arguments it takes, its implementation."""

    name: str
    min_args: int
    max_args: int | None  # None: any number
    impl: Impl
