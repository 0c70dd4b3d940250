"""Whether escape codes may reach the terminal, and a filter for what SDKs print without asking.

azure-ai-ml's upload (``_artifacts/_blob_storage_helper.py`` and ``_gen2_storage_helper.py``,
``upload``) ends with ``print(Fore.RESET + "\\n", file=sys.stderr)`` whether or not stderr is a
terminal, and colours its tqdm bar with ``Fore.GREEN``: a CI log gets ``ESC[39m`` and blank lines.
``plain_sdk_console`` swaps ``sys.stderr`` for a filter around such calls when colour is not
wanted (stderr is no TTY, or ``NO_COLOR`` is set: https://no-color.org).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

# CSI sequences (colours, cursor moves) and the two-character escapes colorama/tqdm also use.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def colour_allowed(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stderr by default) is a terminal and ``NO_COLOR`` is unset or empty."""
    if os.environ.get("NO_COLOR"):
        return False
    target = sys.stderr if stream is None else stream
    try:
        return bool(target.isatty())
    except (AttributeError, ValueError):
        return False


def strip_escapes(text: str) -> str:
    return _ESCAPES.sub("", text)


class PlainStream:
    """A text stream that drops escape codes and blank lines, and passes everything else through."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self.at_line_start = True  # what the log handlers wrote before us ended its line

    def write(self, text: str) -> int:
        plain = strip_escapes(text).replace("\r", "")
        kept = []
        for char in plain:
            if char == "\n" and self.at_line_start:
                continue  # a blank line: what the SDK prints after its upload
            kept.append(char)
            self.at_line_start = char == "\n"
        if kept:
            self.inner.write("".join(kept))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.inner.fileno()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


_swap_lock = threading.Lock()
_swap_depth = 0
_swapped_from: TextIO | None = None


@contextlib.contextmanager
def plain_sdk_console() -> Iterator[None]:
    """Around an SDK call: no escape codes or blank lines on stderr unless colour is allowed.

    Assets register concurrently: the first caller installs the filter, the last one removes it.
    """
    global _swap_depth, _swapped_from
    if colour_allowed(sys.stderr) and _swap_depth == 0:
        yield
        return
    with _swap_lock:
        if _swap_depth == 0:
            _swapped_from = sys.stderr
            sys.stderr = PlainStream(sys.stderr)  # type: ignore[assignment]
        _swap_depth += 1
    try:
        yield
    finally:
        with _swap_lock:
            _swap_depth -= 1
            if _swap_depth == 0 and _swapped_from is not None:
                sys.stderr = _swapped_from
                _swapped_from = None
