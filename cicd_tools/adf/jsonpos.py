"""JSON paths (``$.properties.activities[2].typeProperties.url``) and the line each one starts on in a file.

The linter reports findings by JSON path; CI annotations want a line number. ``json`` keeps no positions,
so ``line_index`` scans the text once with a small recursive-descent reader.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

PathPart = str | int

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # the same rule as expressions.iter_expression_strings
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_PART = re.compile(r"""\.([^.\[]+)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]|\["((?:[^"\\]|\\.)*)"\]""")


def child(path: str, key: PathPart) -> str:
    """The path of ``key`` under ``path``: ``$.a`` + ``b`` -> ``$.a.b``; odd keys are quoted."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT.match(key):
        return f"{path}.{key}"
    return "{}['{}']".format(path, key.replace("\\", "\\\\").replace("'", "\\'"))


def join(path: str, parts: Sequence[PathPart]) -> str:
    """``child`` applied for every part in turn."""
    for part in parts:
        path = child(path, part)
    return path


def split(path: str) -> tuple[PathPart, ...]:
    """The parts of a JSON path (the inverse of ``join``); unknown syntax ends the parse."""
    parts: list[PathPart] = []
    pos = 1 if path.startswith("$") else 0
    while pos < len(path):
        match = _PART.match(path, pos)
        if match is None:
            break
        dotted, index, single, double = match.groups()
        if dotted is not None:
            parts.append(dotted)
        elif index is not None:
            parts.append(int(index))
        else:
            raw = single if single is not None else double
            parts.append(re.sub(r"\\(.)", r"\1", raw or ""))
        pos = match.end()
    return tuple(parts)


class _Scanner:
    """Reads JSON text and records the line of every member key and array element."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: dict[tuple[PathPart, ...], int] = {}
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    def line_at(self, offset: int) -> int:
        lo, hi = 0, len(self._newlines)
        while lo < hi:  # bisect: number of newlines before offset
            mid = (lo + hi) // 2
            if self._newlines[mid] < offset:
                lo = mid + 1
            else:
                hi = mid
        return lo + 1

    def skip(self, pos: int) -> int:
        match = _WS.match(self.text, pos)
        return match.end() if match else pos

    def value(self, pos: int, path: tuple[PathPart, ...]) -> int:
        pos = self.skip(pos)
        char = self.text[pos : pos + 1]
        if char == "{":
            return self._object(pos + 1, path)
        if char == "[":
            return self._array(pos + 1, path)
        if char == '"':
            return int(_DECODER.raw_decode(self.text, pos)[1])
        for literal in ("true", "false", "null"):
            if self.text.startswith(literal, pos):
                return pos + len(literal)
        match = _NUMBER.match(self.text, pos)
        if match is None:
            raise ValueError(f"unexpected character at offset {pos}")
        return match.end()

    def _object(self, pos: int, path: tuple[PathPart, ...]) -> int:
        pos = self.skip(pos)
        if self.text.startswith("}", pos):
            return pos + 1
        while True:
            pos = self.skip(pos)
            if not self.text.startswith('"', pos):
                raise ValueError(f"expected a key at offset {pos}")
            key, end = _DECODER.raw_decode(self.text, pos)
            member = (*path, key)
            self.lines.setdefault(member, self.line_at(pos))
            pos = self.skip(end)
            if not self.text.startswith(":", pos):
                raise ValueError(f"expected ':' at offset {pos}")
            pos = self.skip(self.value(pos + 1, member))
            if self.text.startswith(",", pos):
                pos += 1
                continue
            if self.text.startswith("}", pos):
                return pos + 1
            raise ValueError(f"expected ',' or '}}' at offset {pos}")

    def _array(self, pos: int, path: tuple[PathPart, ...]) -> int:
        pos = self.skip(pos)
        if self.text.startswith("]", pos):
            return pos + 1
        index = 0
        while True:
            pos = self.skip(pos)
            element = (*path, index)
            self.lines.setdefault(element, self.line_at(pos))
            pos = self.skip(self.value(pos, element))
            index += 1
            if self.text.startswith(",", pos):
                pos += 1
                continue
            if self.text.startswith("]", pos):
                return pos + 1
            raise ValueError(f"expected ',' or ']' at offset {pos}")


def line_index(text: str) -> dict[tuple[PathPart, ...], int]:
    """Map every member/element path of a JSON document to its 1-based line; ``{}`` if it does not scan."""
    scanner = _Scanner(text.lstrip("\ufeff"))
    try:
        scanner.value(0, ())
    except (ValueError, IndexError):
        return scanner.lines  # what was read before the problem still helps
    scanner.lines.setdefault((), 1)
    return scanner.lines


def line_of(index: dict[tuple[PathPart, ...], int], path: str) -> int | None:
    """The line of ``path``, or of its nearest ancestor that the index knows."""
    parts = split(path)
    while True:
        if parts in index:
            return index[parts]
        if not parts:
            return None
        parts = parts[:-1]
