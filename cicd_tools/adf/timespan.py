"""ADF timespans (``d.hh:mm:ss`` / ``hh:mm:ss``) as used by policy timeouts, Until and httpRequestTimeout."""

from __future__ import annotations

import re

# ADF's documented pattern: ((\d+)\.)?(\d\d):(60|([0-5][0-9])):(60|([0-5][0-9]))
_STRICT = re.compile(r"(?:(\d+)\.)?(\d\d):(60|[0-5]\d):(60|[0-5]\d)\Z")
# What .NET TimeSpan.Parse (which the service uses) also takes: one-digit fields, fractions.
_LOOSE = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.\d{1,7})?)?\Z")


def parse_timespan(text: str) -> tuple[float | None, bool]:
    """Seconds of a d.hh:mm:ss / hh:mm:ss value (None if it does not parse) and whether it is strict."""
    strict = _STRICT.match(text) is not None
    match = _LOOSE.match(text)
    if match is None:
        return None, False
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    if hours > 23 or minutes > 60 or seconds > 60:
        return None, False
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds), strict


def timespan_seconds(value: object, default: float) -> float:
    """Seconds of a timespan value; ``default`` when it is absent, dynamic or unreadable."""
    if not isinstance(value, str):
        return default
    seconds, _ = parse_timespan(value)
    return seconds if seconds is not None else default
