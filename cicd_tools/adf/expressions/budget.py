"""The evaluation budget: how long a string and how many array items an expression may produce.

ADF documents no limit on a string value, but it caps what can reach a pipeline: a
WebActivity response at 4 MB, a ForEach at 100,000 items. The local evaluator refuses to build a string longer
than ``MAX_STRING_CHARS`` or an array longer than ``MAX_ARRAY_ITEMS``, and checks the size *before* building
(``replace``, ``concat``, ``join``, rendering an array or object as text), so ten nested
``replace(..., 'a', 'aaaaaaaaaa')`` or a loop doubling a string fail with a clear error, never a MemoryError.
The limits are listed in the README ("Input limits").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cicd_tools.adf.expressions.types import FunctionFailure

MAX_STRING_CHARS = 4 * 1024 * 1024  # characters in one string (ADF: a WebActivity response is at most 4 MB)
MAX_ARRAY_ITEMS = 100_000  # items in one array value (ADF's ForEach item limit)


class EvaluationLimit(FunctionFailure):
    """A value past the evaluation budget: a usage error wherever it happens (``adf eval`` and ``run-local``)."""


def string_too_long(what: str, size: int) -> FunctionFailure:
    return EvaluationLimit(f"{what} would be {size:,} characters long; the local evaluator's limit is"
                           f" {MAX_STRING_CHARS:,}")


def check_string_length(size: int, what: str) -> None:
    """Refuse a string of ``size`` characters before it is built. Raises: FunctionFailure."""
    if size > MAX_STRING_CHARS:
        raise string_too_long(what, size)


def join_bounded(pieces: Iterable[str], separator: str, what: str) -> str:
    """``separator.join(pieces)``, refused as soon as the running length passes the limit."""
    kept: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece) + (len(separator) if kept else 0)
        if size > MAX_STRING_CHARS:
            raise string_too_long(what, size)
        kept.append(piece)
    return separator.join(kept)


def check_rendered_size(value: Any, what: str) -> None:
    """Refuse rendering an array or object as JSON text when the text would pass the limit.

    A lower bound of the rendered size (each string with its quotes, each number's digits, one separator per
    item) is summed, stopping as soon as it passes the limit, so the walk itself is bounded even when one array
    is referenced many times.
    """
    size = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 3
        elif isinstance(item, int | float) and not isinstance(item, bool):
            size += len(repr(item)) + 1
        else:
            size += 2
        if size > MAX_STRING_CHARS:
            raise string_too_long(what, size)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def check_value(value: Any, what: str) -> None:
    """Refuse a function result that is a string or an array over the limits. Raises: FunctionFailure."""
    if isinstance(value, str):
        check_string_length(len(value), what)
    elif isinstance(value, list | tuple) and len(value) > MAX_ARRAY_ITEMS:
        raise EvaluationLimit(f"{what} has {len(value):,} items; the local evaluator's limit is"
                              f" {MAX_ARRAY_ITEMS:,} (ADF's ForEach item limit)")
