"""Keep user-derived text from being read as a CI logging command.

Both runners read every line a step prints, on stdout and stderr, and act on commands in it:

- Azure DevOps: the agent looks for ``##vso[`` **anywhere** in a line (``Command.TryParse`` uses
  ``message.IndexOf("##vso[")``, microsoft/azure-pipelines-agent ``Command.cs``), and renders ``##[group]``,
  ``##[error]``… formatting commands.
- GitHub Actions: the runner trims leading whitespace and acts on a line starting with ``::``
  (``ActionCommand.TryParseV2``), and still accepts the old ``##[command]`` form anywhere in a line
  (``ActionCommand.TryParse``, actions/runner ``ActionCommand.cs``).

Both split lines at CR, LF and CRLF (.NET ``ReadLine``). So a file named
``pl_x\\n##vso[task.setvariable variable=PWNED]yes`` printed in a finding would set a variable.
``GuardedStream`` wraps stdout/stderr for the whole CLI run: every line that does not come from
``CiDialect`` (``write_command``) is defused: ``##vso[`` -> ``##vso\\u005b``, ``##[`` -> ``##\\u005b``, a leading
``::`` -> ``\\::``, and ESC/other control bytes are shown as ``\\u001b``. ``shown()`` does the per-field part for
renderers: one user-derived value stays on one line.
"""

from __future__ import annotations

import re
import threading
from typing import TextIO

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ADO_COMMAND = re.compile(r"##(vso)?\[", re.IGNORECASE)
_GHA_COMMAND = re.compile(r"^(\s*)::")
# C0 controls except TAB, DEL and C1 controls: cursor moves, colours, hidden text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FIELD_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _hex(match: re.Match[str]) -> str:
    char = match.group(0)
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def _json_hex(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group(0)):04x}"  # JSON-valid, so a JSON line stays a JSON line


def shown(value: object) -> str:
    """A user-derived value for a text line: control characters (LF, CR, ESC, ...) written as escapes."""
    return _FIELD_CONTROL.sub(_hex, str(value))


def defuse_segment(segment: str, *, at_line_start: bool = True) -> str:
    """One line (no line break inside) as the runners will not read a command in it."""
    segment = _CONTROL.sub(_json_hex, segment)
    # ``\u005b`` (not ``\[``): the line may be a JSON document, and this is the only escape of ``[`` that
    # keeps a JSON string's value intact.
    segment = _ADO_COMMAND.sub(lambda m: m.group(0)[:-1] + "\\u005b", segment)
    if at_line_start:
        segment = _GHA_COMMAND.sub(lambda m: m.group(1) + "\\::", segment)
    return segment


def defuse(text: str) -> str:
    """Every line of ``text`` defused; line breaks kept (CR alone becomes LF: the runners break there too)."""
    return "\n".join(defuse_segment(part) for part in _LINE_BREAK.split(text))


class GuardedStream:
    """A text stream whose lines cannot carry a CI logging command, except through ``write_command``.

    Text is held until its line ends (or ``flush``), so a command split across ``write`` calls is still
    seen whole; a flushed partial line continues without being taken for a new line's start.
    """

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self._lock = threading.RLock()  # log handlers, SDK prints and CiDialect write from several threads
        self._pending = ""
        self._mid_line = False  # the current line already has non-blank text written out

    def write(self, text: str) -> int:
        with self._lock:
            return self._write(text)

    def _write(self, text: str) -> int:
        data = self._pending + text
        hold = "\r" if data.endswith("\r") else ""  # maybe the first half of CRLF
        parts = _LINE_BREAK.split(data[: len(data) - len(hold)])
        self._pending = parts.pop() + hold
        if parts:
            out = []
            for part in parts:
                out.append(defuse_segment(part, at_line_start=not self._mid_line) + "\n")
                self._mid_line = False
            self.inner.write("".join(out))
        return len(text)

    def _drain(self) -> None:
        """Write the held partial line out (a command split across a flush is not seen: a known limit)."""
        pending, self._pending = self._pending, ""
        ended = pending.endswith("\r")
        pending = pending.removesuffix("\r")
        if pending:
            self.inner.write(defuse_segment(pending, at_line_start=not self._mid_line))
            self._mid_line = self._mid_line or bool(pending.strip())
        if ended:
            self.inner.write("\n")
            self._mid_line = False

    def flush(self) -> None:
        with self._lock:
            self._drain()
        self.inner.flush()

    def write_command(self, line: str) -> None:
        """A logging command of our own (already escaped by ``CiDialect``): written as it is, on its own line."""
        with self._lock:
            self._drain()
            if self._mid_line:
                self.inner.write("\n")
                self._mid_line = False
            self.inner.write(line)
        self.inner.flush()

    def isatty(self) -> bool:
        return bool(self.inner.isatty())

    def fileno(self) -> int:
        return self.inner.fileno()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)
