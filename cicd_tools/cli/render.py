"""Output formats as ``az`` users know them: ``-o text|json|jsonc|yaml|table|tsv|none`` and ``--query`` (JMESPath).

Every format is drawn from the same result object (``Outcome.data``); ``text`` is the command's own text for
people. ``--query`` is applied to the JSON form of the result before rendering, as ``az`` does, so
``--query "[0].version" -o tsv`` prints a bare value a shell can capture. ``table`` and ``tsv`` follow ``az``:
a list of objects is rows, an object is one row, and only scalar fields become columns (nested values are for
``--query`` to reach).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from cicd_tools.support.errors import UsageError

OUTPUT_CHOICES = ("text", "json", "jsonc", "yaml", "table", "tsv", "none")
JSON_FORMATS = ("json", "jsonc")  # formats whose errors are one JSON document on stdout too
MAX_QUERY = 4096


def plain(data: Any) -> Any:
    """The result as plain JSON values (what ``--output json`` prints and ``--query`` reads)."""
    result: Any = json.loads(json.dumps(data, default=str))
    return result


def apply_query(data: Any, query: str) -> Any:
    """``--query``: a JMESPath expression over the JSON form. Raises: UsageError for an invalid expression."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    if len(query) > MAX_QUERY:
        raise UsageError(f"--query is {len(query)} characters long; at most {MAX_QUERY} are read",
                         hint="Shorten the JMESPath expression.", code="InvalidQuery")
    try:
        return jmespath.search(query, plain(data))
    except RecursionError:  # jmespath's parser recurses per nesting level
        raise UsageError("--query nests too deeply to evaluate", hint="Flatten the JMESPath expression.",
                         code="InvalidQuery") from None
    except JMESPathError as exc:
        message = " ".join(str(exc).split())
        raise UsageError(f"--query {query!r} is not a valid JMESPath expression: {message}",
                         hint="See https://jmespath.org; e.g. --query \"[0].version\" or --query \"checks[].name\".",
                         code="InvalidQuery") from None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"  # az prints Python's booleans in tables and tsv
    return " ".join(str(value).split())  # one line per row, whatever the value holds


def _rows(data: Any) -> tuple[list[str], list[list[str]]]:
    """Columns and rows for ``table``: scalar fields only, columns in first-seen order."""
    items = data if isinstance(data, list) else [data]
    columns: list[str] = []
    for item in items:
        if isinstance(item, Mapping):
            columns += [k for k, v in item.items() if _scalar(v) and k not in columns]
    if not columns:  # a list of scalars (or one scalar): one column
        return ["Result"], [[_cell(item)] for item in items if _scalar(item)]
    rows = [[_cell(item.get(c)) for c in columns] for item in items if isinstance(item, Mapping)]
    return columns, rows


def _header(name: str) -> str:
    """az's column header: ``resourceGroup`` -> ``ResourceGroup``."""
    return name[:1].upper() + name[1:]


def to_table(data: Any) -> str:
    columns, rows = _rows(data)
    if not rows:
        return ""
    heads = [_header(c) for c in columns]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def to_tsv(data: Any) -> str:
    """az's tsv: one line per item, scalar values tab-separated; a scalar result is the bare value."""
    if _scalar(data):
        return _cell(data)
    items = data if isinstance(data, list) else [data]
    lines = []
    for item in items:
        if isinstance(item, Mapping):
            lines.append("\t".join(_cell(v) for v in item.values() if _scalar(v)))
        elif isinstance(item, list):
            lines.append("\t".join(_cell(v) for v in item if _scalar(v)))
        else:
            lines.append(_cell(item))
    return "\n".join(lines)


def to_yaml(data: Any) -> str:
    import yaml

    return str(yaml.safe_dump(plain(data), sort_keys=False, allow_unicode=True, default_flow_style=False)).rstrip()


_COLOURS = {"key": "\x1b[94m", "str": "\x1b[32m", "num": "\x1b[36m", "lit": "\x1b[35m", "end": "\x1b[0m"}


def to_jsonc(data: Any) -> str:
    """Coloured JSON on a terminal (``NO_COLOR`` and pipes get plain JSON, as az's jsonc does)."""
    text = json.dumps(plain(data), indent=2)
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    import re

    def paint(match: re.Match[str]) -> str:
        token = match.group(0)
        if match.group("key"):
            return f"{_COLOURS['key']}{match.group('key')}{_COLOURS['end']}:"
        kind = "str" if token.startswith('"') else "lit" if token in ("true", "false", "null") else "num"
        return f"{_COLOURS[kind]}{token}{_COLOURS['end']}"

    pattern = (r'(?P<key>"(?:[^"\\]|\\.)*")\s*:|"(?:[^"\\]|\\.)*"|\btrue\b|\bfalse\b|\bnull\b'
               r"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
    return re.sub(pattern, paint, text)


def render(data: Any, text: str, output: str, query: str | None) -> str | None:
    """What stdout shows for a result; None prints nothing (``-o none``)."""
    if output == "none":
        return None
    if query is not None:
        data = apply_query(data, query)
        if output == "text":  # a query's result has no prose form: JSON, or the bare value of a scalar
            return to_tsv(data) if _scalar(data) else json.dumps(data, indent=2)
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=False, default=str)
    if output == "jsonc":
        return to_jsonc(data)
    if output == "yaml":
        return to_yaml(data)
    if output == "table":
        return to_table(plain(data))
    if output == "tsv":
        return to_tsv(plain(data))
    return text
