"""YAML with line numbers: mappings and strings remember where they stand, so findings point at a line.

PyYAML's SafeLoader, with one change: ``on``/``off``/``yes``/``no`` stay strings (GitHub's ``on:`` key is
not the boolean True that YAML 1.1 makes of it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from cicd_tools.support.bounded import (
    MAX_YAML_BYTES,
    bounded_loader,
    display_name,
    load_yaml_bounded,
    read_text_bounded,
)
from cicd_tools.support.errors import UsageError


class YMap(dict[Any, Any]):
    """A mapping that knows its line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class YStr(str):
    """A string scalar that knows the line its text starts on (1-based)."""

    line: int = 0


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans; ``_Bounded`` (below) adds the depth and alias limits."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _construct_mapping(loader: _Loader, node: MappingNode) -> YMap:
    out = YMap()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_str(loader: _Loader, node: Node) -> YStr:
    assert isinstance(node, ScalarNode)
    out = YStr(loader.construct_scalar(node))
    # A block scalar (| or >) starts on the line after its indicator.
    out.line = node.start_mark.line + 1 + (1 if node.style in ("|", ">") else 0)
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)  # type: ignore[arg-type]
_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Bounded = bounded_loader(_Loader)


def load_yaml(path: Path) -> Any:
    """The document at ``path``. Raises: UsageError naming the file and line of a syntax error."""
    shown = display_name(path)
    try:
        text = read_text_bounded(path, cap=MAX_YAML_BYTES, what="pipeline file")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {shown}: {exc}", hint="Pass pipeline YAML files that exist.") from None
    try:
        return load_yaml_bounded(text, loader=_Bounded, where=shown)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{shown}{where}: not valid YAML: {getattr(exc, 'problem', exc)}",
                         hint="Fix the YAML syntax at the line named.") from None


def line_of(obj: Any, key: Any = None, default: int = 1) -> int:
    """The line of ``obj`` (or of ``obj``'s ``key``) when known."""
    if key is not None and isinstance(obj, YMap):
        return obj.key_lines.get(key, obj.line or default)
    return int(getattr(obj, "line", 0) or default)
