"""The `.amlignore` / `.gitignore` rules exactly as azure-ai-ml applies them when it hashes a code asset.

azure-ai-ml (checked on 1.35.2) reads one ignore file from the code root (`.amlignore`, else `.gitignore`;
nested ignore files are ordinary files), turns each line into a gitwildmatch regex (its vendored copy of
pathspec's ``GitWildMatchPattern``) and lets the last matching line decide. Unlike git, a `!` line re-includes
a file even under an excluded folder, because every file is matched on its own path. The path matched is the
file's *resolved* folder relative to the ignore file's *resolved* folder, so files reached through a folder
symlink are matched under the link target's path. This module reimplements that translation (no SDK import)
and ``tests/unit/test_code_ignore.py`` checks it against the SDK's own.
"""

from __future__ import annotations

import os
import posixpath
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from cicd_tools.support.errors import UsageError

AML_IGNORE_FILE = ".amlignore"
GIT_IGNORE_FILE = ".gitignore"
IGNORE_FILE_NAMES: tuple[str, ...] = (AML_IGNORE_FILE, GIT_IGNORE_FILE)  # precedence order

# `**/` alone matches everything below the root but no file in the root itself.
_ANY_SUBDIR_REGEX = "^.+(?P<ps_d>/).*$"
_ENCODING = "utf-8-sig"  # what the SDK opens ignore files with: a UTF-8 BOM is dropped
_CODE = "invalid-ignore"
_OTHER_SEPS = tuple(sep for sep in (os.sep, os.altsep) if sep and sep != posixpath.sep)


class InvalidIgnoreFile(UsageError):
    """The code folder's ignore file cannot be read or holds a pattern that cannot be compiled."""

    default_hint = "Fix or remove the offending line; Azure ML itself would fail on the same file."


@dataclass(frozen=True)
class IgnorePattern:
    """One effective line of an ignore file."""

    line: str
    regex: re.Pattern[str]
    ignores: bool  # False for a `!` line, which re-includes what it matches


@dataclass(frozen=True)
class IgnoreRules:
    """The ignore file in force for a code folder (or none) and its compiled patterns."""

    source: Path | None  # the ignore file as found in the code root, None when there is none
    base: str  # resolved folder that matched paths are relative to
    patterns: tuple[IgnorePattern, ...]

    def prefix_for(self, real_dir: str) -> str:
        """The path prefix (ending in `/`, or empty) under which files of ``real_dir`` are matched."""
        rel = os.path.relpath(real_dir, self.base)
        for sep in _OTHER_SEPS:
            rel = rel.replace(sep, posixpath.sep)
        return "" if rel == "." else rel + "/"

    def excludes(self, match_path: str) -> bool:
        """Whether ``match_path`` (``prefix_for`` + file name) is left out: the last matching line decides."""
        for pattern in reversed(self.patterns):
            if pattern.regex.match(match_path) is not None:
                return pattern.ignores
        return False


def translate_pattern(line: str) -> tuple[str | None, bool | None]:
    """A gitwildmatch line as ``(regex, ignores)``; ``(None, None)`` for blanks and comments.

    Raises:
        ValueError: the pattern is invalid (a lone `!`, a trailing backslash).
    """
    text = line.strip()
    # A lone `/` matches nothing, according to `git check-ignore`.
    if not text or text.startswith("#") or text == "/":
        return None, None
    ignores = not text.startswith("!")
    if not ignores:
        text = text[1:]
    segments = text.split("/")
    # Consecutive `**` segments mean the same as one.
    for i in range(len(segments) - 1, 0, -1):
        if segments[i - 1] == "**" and segments[i] == "**":
            del segments[i]
    override = _ANY_SUBDIR_REGEX if len(segments) == 2 and segments[0] == "**" and not segments[1] else None
    if not segments[0]:
        del segments[0]  # a leading `/` anchors the pattern to the root
    elif (len(segments) == 1 or (len(segments) == 2 and not segments[1])) and segments[0] != "**":
        # A bare name (or `name/`) matches at any depth; `dir/name` stays anchored, as in git.
        segments.insert(0, "**")
    if not segments:
        raise ValueError(f"invalid pattern {line!r}")
    if len(segments) > 1 and not segments[-1]:
        segments[-1] = "**"  # `dir/` matches everything below dir (and never a plain file named dir)
    if override is not None:
        return override, ignores
    return _segments_regex(segments, line), ignores


def _segments_regex(segments: list[str], line: str) -> str:
    parts = ["^"]
    need_slash = False
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == "**":
            if i == 0 and i == last:
                parts.append(".+")
            elif i == 0:
                parts.append("(?:.+/)?")
                need_slash = False
            elif i == last:
                parts.append("(?P<ps_d>/).*")
            else:
                parts.append("(?:/.+)?")
                need_slash = True
            continue
        if need_slash:
            parts.append("/")
        parts.append("[^/]+" if segment == "*" else _glob_regex(segment, line))
        if i == last:
            parts.append("(?:(?P<ps_d>/).*)?")  # a name matches a file or a folder with its contents
        need_slash = True
    parts.append("$")
    return "".join(parts)


def _glob_regex(glob: str, line: str) -> str:
    """One path segment's glob as a regex (fnmatch with FNM_PATHNAME, `[!...]` negation)."""
    out: list[str] = []
    i, end = 0, len(glob)
    while i < end:
        char = glob[i]
        i += 1
        if char == "\\":
            if i == end:
                raise ValueError(f"invalid pattern {line!r}: nothing after the escape character")
            out.append(re.escape(glob[i]))
            i += 1
        elif char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = _bracket_end(glob, i)
            if close is None:
                out.append("\\[")  # no closing bracket: a literal `[`
                continue
            expr = "["
            if glob[i] == "!":
                expr += "^"
                i += 1
            elif glob[i] == "^":
                expr += "\\^"  # undefined in POSIX globs; pathspec keeps it literal
                i += 1
            out.append(expr + glob[i:close].replace("\\", "\\\\"))
            i = close
        else:
            out.append(re.escape(char))
    return "".join(out)


def _bracket_end(glob: str, start: int) -> int | None:
    """Index one past the `]` closing a bracket expression opened just before ``start``."""
    j, end = start, len(glob)
    if j < end and glob[j] == "!":
        j += 1
    if j < end and glob[j] == "]":
        j += 1  # a `]` first in the set is a member, not the end
    while j < end and glob[j] != "]":
        j += 1
    return j + 1 if j < end else None


def compile_patterns(lines: list[str], source: Path) -> tuple[IgnorePattern, ...]:
    """Compile an ignore file's lines, dropping blanks and comments.

    Raises:
        InvalidIgnoreFile: a line is not a valid pattern.
    """
    patterns: list[IgnorePattern] = []
    for number, line in enumerate(lines, start=1):
        try:
            regex, ignores = translate_pattern(line)
            if regex is None or ignores is None:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "possible nested set" for `[[`
                compiled = re.compile(regex)
        except (ValueError, re.error) as exc:
            raise InvalidIgnoreFile(
                f"{source}:{number}: cannot use ignore pattern {line.strip()!r}: {exc}", code=_CODE
            ) from None
        patterns.append(IgnorePattern(line=line.strip(), regex=compiled, ignores=ignores))
    return tuple(patterns)


def load_ignore_rules(root: Path) -> IgnoreRules:
    """The rules in force for the code folder ``root``: root `.amlignore`, else root `.gitignore`, else none.

    Raises:
        InvalidIgnoreFile: the ignore file exists but cannot be read, decoded or compiled.
    """
    for name in IGNORE_FILE_NAMES:
        named = root / name
        try:
            # The SDK resolves the ignore file first: a symlinked ignore file matches relative to its target.
            resolved = named.resolve()
            present = resolved.exists()
        except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop (Python 3.11)
            raise InvalidIgnoreFile(f"cannot resolve ignore file {named}: {exc}", code=_CODE) from None
        if not present:
            continue
        try:
            # Text mode on purpose: the SDK splits lines with universal newlines (\n, \r\n and a lone \r).
            with open(resolved, encoding=_ENCODING) as fh:
                lines = [line.rstrip() for line in fh]
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidIgnoreFile(f"cannot read ignore file {named}: {exc}", code=_CODE) from None
        return IgnoreRules(source=named, base=str(resolved.parent), patterns=compile_patterns(lines, named))
    return IgnoreRules(source=None, base=str(root), patterns=())
