"""Readable names for ARM template resources whose ``name`` is an ARM expression.

``[concat(parameters('factoryName'), '/PL_Copy')]`` -> ``PL_Copy``. Only what resource names use is
understood (string literals, ``concat``, ``format``, ``parameters``, ``variables``); anything else is kept
as ``{...}`` so the name stays recognisable rather than wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"\s*(?:'((?:[^']|'')*)'|([A-Za-z_][\w.]*)|(-?\d+)|([(),\[\]]))")


class _Unsupported(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _Unsupported(text[pos:])
        string, ident, number, punct = match.groups()
        if string is not None:
            out.append(("str", string.replace("''", "'")))
        elif ident is not None:
            out.append(("ident", ident))
        elif number is not None:
            out.append(("str", number))
        else:
            out.append(("punct", punct))
        pos = match.end()
    return out


class _Renderer:
    def __init__(self, tokens: list[tuple[str, str]], template: Mapping[str, Any]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.template = template

    def _next(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise _Unsupported("end of expression")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _expect(self, punct: str) -> None:
        if self._next() != ("punct", punct):
            raise _Unsupported(punct)

    def expr(self) -> str:
        kind, value = self._next()
        if kind == "str":
            return value
        if kind != "ident":
            raise _Unsupported(value)
        self._expect("(")
        args: list[str] = []
        if self.tokens[self.pos : self.pos + 1] != [("punct", ")")]:
            while True:
                args.append(self.expr())
                kind, punct = self._next()
                if (kind, punct) == ("punct", ")"):
                    break
                if (kind, punct) != ("punct", ","):
                    raise _Unsupported(punct)
        else:
            self.pos += 1
        return self._call(value.lower(), args)

    def _call(self, name: str, args: list[str]) -> str:
        if name == "concat":
            return "".join(args)
        if name == "format" and args:
            return re.sub(r"\{(\d+)\}", lambda m: _arg(args[1:], int(m.group(1))), args[0])
        if name == "parameters" and len(args) == 1:
            return "{" + args[0] + "}"
        if name == "variables" and len(args) == 1:
            variables = self.template.get("variables")
            value = variables.get(args[0]) if isinstance(variables, Mapping) else None
            if isinstance(value, str) and not value.startswith("["):
                return value
            return "{" + args[0] + "}"
        raise _Unsupported(name)


def _arg(args: list[str], index: int) -> str:
    return args[index] if index < len(args) else "{" + str(index) + "}"


def render_arm_string(value: str, template: Mapping[str, Any]) -> str:
    """Evaluate an ARM string as far as names need; parameters become ``{name}`` placeholders."""
    if not (value.startswith("[") and value.endswith("]")) or value.startswith("[["):
        return value[1:] if value.startswith("[[") else value
    inner = value[1:-1]
    try:
        renderer = _Renderer(_tokens(inner), template)
        rendered = renderer.expr()
        if renderer.pos != len(renderer.tokens):
            raise _Unsupported("trailing tokens")
        return rendered
    except _Unsupported:
        return "{" + inner.strip() + "}"


def readable_resource_name(name: str, template: Mapping[str, Any]) -> str:
    """The child part of a (possibly ARM-expression) resource name: ``factory/pipeline`` -> ``pipeline``."""
    rendered = render_arm_string(name, template)
    return rendered.split("/", 1)[1] if "/" in rendered else rendered
