"""Reading input files with limits: size, nesting depth, YAML alias expansion; regular files only.

Every file the tool reads (pipeline YAML, job YAML, ADF JSON, reports, settings) goes through here, so a
hostile or accidental input (a billion-laughs YAML, JSON nested 100k deep, ``/dev/zero``, a FIFO) is refused
at once with a usage error (exit 2) instead of exhausting memory, the stack or the clock. The limits are
documented in the README ("Input limits").
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from cicd_tools.support.errors import UsageError
from cicd_tools.support.outpath import file_kind as _kind
from cicd_tools.support.outpath import printable

MAX_FILE_BYTES = 10 * 1024 * 1024  # any JSON input file (ADF's largest documented object, an ARM template, is 4 MB)
MAX_YAML_BYTES = 1024 * 1024  # CI and job YAML: building the values runs in Python (~0.3 MB/s on a busy agent)
MAX_DEPTH = 128  # nesting of lists and objects, JSON and YAML
MAX_YAML_NODES = 1_000_000  # YAML nodes once aliases and merge keys are expanded (billion laughs: 10^9)


class InputRefused(UsageError):
    """An input file is not a regular file, or exceeds a size, depth or expansion limit."""

    default_hint = "Pass the file the command expects; the input limits are listed in the README (Input limits)."


def read_bytes_bounded(path: Path | str, *, cap: int = MAX_FILE_BYTES, what: str = "input file") -> bytes:
    """The content of a regular file of at most ``cap`` bytes.

    A FIFO, a device, a socket or a folder is refused before it is opened (and again, by ``fstat``, after an
    ``O_NONBLOCK`` open, in case it was swapped meanwhile), so nothing blocks and nothing endless is read.
    Raises: InputRefused; OSError for a file that does not exist or cannot be opened (callers word that one).
    """
    name = display_name(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise InputRefused(f"the {what} {name} is not a regular file ({_kind(mode)})")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputRefused(f"the {what} {name} is not a regular file ({_kind(mode)})")
        chunks: list[bytes] = []
        left = cap + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > cap:
        raise InputRefused(f"the {what} {name} is larger than {_size(cap)}; this tool reads at most {_size(cap)}")
    return data


def read_text_bounded(path: Path | str, *, cap: int = MAX_FILE_BYTES, encoding: str = "utf-8",
                      what: str = "input file") -> str:
    """``read_bytes_bounded`` decoded. Raises: InputRefused, OSError, UnicodeDecodeError."""
    return read_bytes_bounded(path, cap=cap, what=what).decode(encoding)


def check_depth(value: Any, *, limit: int = MAX_DEPTH, where: str = "the JSON value") -> None:
    """Refuse ``value`` when lists and objects nest deeper than ``limit`` (iterative: ``value`` may be deep)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            raise _too_deep(where, limit)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)


def _too_deep(where: str, limit: int) -> InputRefused:
    return InputRefused(f"{where} nests lists and objects more than {limit} levels deep",
                        hint="Real pipelines, jobs and reports nest a few dozen levels at most; check the file.")


def loads_json_bounded(text: str, *, where: str = "the JSON value", limit: int = MAX_DEPTH) -> Any:
    """``json.loads`` with nesting capped. Raises: InputRefused (too deep), json.JSONDecodeError (syntax)."""
    try:
        value = json.loads(text)
    except RecursionError:  # deeper than the interpreter's stack: far over the limit
        raise _too_deep(where, limit) from None
    check_depth(value, limit=limit, where=where)
    return value


def load_json_bounded(path: Path | str, *, cap: int = MAX_FILE_BYTES, encoding: str = "utf-8-sig",
                      what: str = "input file") -> Any:
    """A JSON file, size- and depth-capped. Raises: InputRefused, OSError, UnicodeDecodeError, JSONDecodeError."""
    text = read_text_bounded(path, cap=cap, encoding=encoding, what=what)
    return loads_json_bounded(text, where=f"the {what} {display_name(path)}")


def display_name(path: Path | str) -> str:
    """A path as messages print it: control characters (newline, ESC...) escaped, never raw on the terminal."""
    return printable(str(path))


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 and n % (1024 * 1024) == 0 else f"{n} bytes"


def bounded_loader(base: type[Any]) -> type[Any]:
    """A subclass of the PyYAML loader ``base`` that refuses deep nesting, recursive aliases and expansion bombs.

    While composing, each node's expanded size (itself plus its children, an alias counting as the whole node
    it names) is summed; past MAX_YAML_NODES the document is refused. The sum is kept per node, so the check is
    linear in the document, not in its expansion: nine levels of nine aliases are refused in milliseconds.
    """
    from yaml.composer import Composer
    from yaml.constructor import BaseConstructor
    from yaml.events import AliasEvent
    from yaml.nodes import MappingNode, SequenceNode
    from yaml.resolver import BaseResolver

    try:  # libyaml scans and parses (several times faster); composing stays in Python, where the limits live
        from yaml.cyaml import CParser  # type: ignore[attr-defined]

        parser: tuple[type[Any], ...] = (CParser,)
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        parser = ()

    class Bounded(*parser, base):  # type: ignore[misc]
        def __init__(self, stream: Any) -> None:
            if parser:
                CParser.__init__(self, stream)
                Composer.__init__(self)
                BaseConstructor.__init__(self)
                BaseResolver.__init__(self)
            else:
                base.__init__(self, stream)
            self._bounded_depth = 0
            self._bounded_weight: dict[int, int] = {}

        # Composer's Python methods, ahead of CParser's C ones (which would compose without the limits).
        check_node = Composer.check_node
        get_node = Composer.get_node
        get_single_node = Composer.get_single_node
        compose_scalar_node = Composer.compose_scalar_node
        compose_sequence_node = Composer.compose_sequence_node
        compose_mapping_node = Composer.compose_mapping_node

        def compose_document(self) -> Any:
            self._bounded_weight = {}
            return Composer.compose_document(self)

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(AliasEvent):
                event = self.peek_event()
                named = self.anchors.get(event.anchor)
                if named is not None and id(named) not in self._bounded_weight:  # still being composed: a cycle
                    raise InputRefused(f"the YAML document has an alias inside the node it names (*{event.anchor},"
                                       f" line {event.start_mark.line + 1})", hint="Remove the recursive alias.")
            self._bounded_depth += 1
            if self._bounded_depth > MAX_DEPTH + 1:  # the top node is level 0, as in check_depth
                raise _too_deep(f"the YAML document (line {self.peek_event().start_mark.line + 1})", MAX_DEPTH)
            try:
                node: Any = Composer.compose_node(self, parent, index)
            finally:
                self._bounded_depth -= 1
            weights = self._bounded_weight
            weight = weights.get(id(node))
            if weight is None:
                if isinstance(node, MappingNode):
                    weight = 1 + sum(_weight(weights, k) + _weight(weights, v) for k, v in node.value)
                elif isinstance(node, SequenceNode):
                    weight = 1 + sum(_weight(weights, item) for item in node.value)
                else:
                    weight = 1
                if weight > MAX_YAML_NODES:
                    raise InputRefused(
                        f"the YAML document expands to more than {MAX_YAML_NODES:,} nodes through its aliases"
                        f" (the node at line {node.start_mark.line + 1})",
                        hint="Aliases (*name) that repeat large anchors multiply; write the values out instead.")
                weights[id(node)] = weight
            return node

    def _weight(weights: dict[int, int], node: Any) -> int:
        return weights[id(node)]  # every child went through compose_node (cycles are refused there)

    Bounded.__name__ = Bounded.__qualname__ = f"Bounded{base.__name__}"
    return Bounded


def load_yaml_bounded(text: str, *, loader: type[Any] | None = None, all_documents: bool = False,
                      where: str = "the YAML document") -> Any:
    """YAML text (one document, or every document as a list) with depth and alias expansion capped.

    ``loader`` is a loader class made by ``bounded_loader`` (default: a bounded ``yaml.SafeLoader``).
    Raises: InputRefused, yaml.YAMLError (syntax).
    """
    import yaml

    cls = loader or _safe_loader()
    if len(text) > MAX_YAML_BYTES:
        raise InputRefused(f"{where} is larger than {_size(MAX_YAML_BYTES)}; this tool reads at most"
                           f" {_size(MAX_YAML_BYTES)} of YAML")
    try:
        if all_documents:
            return list(yaml.load_all(text, Loader=cls))
        return yaml.load(text, Loader=cls)  # a bounded SafeLoader subclass
    except RecursionError:
        raise _too_deep(where, MAX_DEPTH) from None


def compose_yaml_bounded(text: str) -> Any:
    """The node tree of the first YAML document (for line numbers), bounded. Raises: InputRefused, YAMLError."""
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise InputRefused(f"the YAML document is larger than {_size(MAX_YAML_BYTES)}")
    return yaml.compose(text, Loader=_safe_loader())


_SAFE: list[type[Any]] = []


def _safe_loader() -> type[Any]:
    if not _SAFE:
        import yaml

        _SAFE.append(bounded_loader(yaml.SafeLoader))
    return _SAFE[0]
