""".NET-style timestamps for ADF date functions: parsing, 100 ns ticks, standard and custom format strings.

A timestamp keeps .NET's precision (ticks of 100 ns) and "kind": one written with ``Z`` or an offset is
UTC (offsets are converted) and renders ``K`` as ``Z``; one without a zone is unspecified and renders
``K`` as nothing, so ``formatDateTime('03/15/2018')`` is ``2018-03-15T00:00:00.0000000`` as documented.
Names and patterns are en-US, the culture the documented examples use.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cicd_tools.adf.expressions.types import FunctionFailure

TICKS_PER_SECOND = 10_000_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
MAX_TICKS = 3_155_378_975_999_999_999  # 9999-12-31T23:59:59.9999999
_EPOCH = datetime(1, 1, 1)

_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTHS = tuple(calendar.month_name)[1:]

_TIME = r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?\s*(?P<ampm>[AP]M)?"
_ZONE = r"\s*(?P<tz>Z|GMT|UTC|[+-]\d{2}(?::?\d{2})?)?\s*"
_ISO = re.compile(r"\s*(?P<y>\d{4})[-/](?P<mo>\d{1,2})[-/](?P<d>\d{1,2})(?:(?:T|\s+)" + _TIME + ")?" + _ZONE, re.I)
_US = re.compile(r"\s*(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})(?:\s+" + _TIME + ")?" + _ZONE, re.I)
_RFC1123 = re.compile(r"\s*(?:[a-z]{3},\s*)?(?P<d>\d{1,2})\s+(?P<mon>[a-z]{3})\s+(?P<y>\d{4})\s+" + _TIME + _ZONE, re.I)

STANDARD_FORMATS: dict[str, str] = {
    "d": "M/d/yyyy",
    "D": "dddd, MMMM d, yyyy",
    "f": "dddd, MMMM d, yyyy h:mm tt",
    "F": "dddd, MMMM d, yyyy h:mm:ss tt",
    "g": "M/d/yyyy h:mm tt",
    "G": "M/d/yyyy h:mm:ss tt",
    "m": "MMMM d",
    "M": "MMMM d",
    "o": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "O": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
    "t": "h:mm tt",
    "T": "h:mm:ss tt",
    "u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
    "U": "dddd, MMMM d, yyyy h:mm:ss tt",
    "y": "MMMM yyyy",
    "Y": "MMMM yyyy",
}


@dataclass(frozen=True)
class Stamp:
    """A .NET DateTime: ticks (100 ns since 0001-01-01) of the wall-clock value, and whether it is UTC."""

    ticks: int
    utc: bool

    def __post_init__(self) -> None:
        if not 0 <= self.ticks <= MAX_TICKS:
            raise FunctionFailure("the timestamp falls outside years 0001 to 9999")

    @classmethod
    def from_datetime(cls, value: datetime, *, utc: bool, extra_ticks: int = 0) -> Stamp:
        """From a naive wall-clock datetime (plus sub-microsecond ticks)."""
        delta = value.replace(tzinfo=None) - _EPOCH
        return cls(delta // timedelta(microseconds=1) * 10 + extra_ticks, utc)

    def wall(self) -> datetime:
        """The naive wall-clock datetime (microsecond precision)."""
        return _EPOCH + timedelta(microseconds=self.ticks // 10)

    def plus_ticks(self, ticks: int) -> Stamp:
        return Stamp(self.ticks + ticks, self.utc)

    def plus_months(self, months: int) -> Stamp:
        """Add calendar months the .NET way: the day is clamped to the end of the target month."""
        wall = self.wall()
        index = wall.year * 12 + wall.month - 1 + months
        year, month = divmod(index, 12)
        if not 1 <= year <= 9999:
            raise FunctionFailure("the timestamp falls outside years 0001 to 9999")
        day = min(wall.day, calendar.monthrange(year, month + 1)[1])
        moved = wall.replace(year=year, month=month + 1, day=day)
        return Stamp.from_datetime(moved, utc=self.utc, extra_ticks=self.ticks % 10)


def _fraction_ticks(digits: str | None) -> int:
    return int((digits or "")[:7].ljust(7, "0"))


def parse_timestamp(text: str) -> Stamp:
    """Parse a timestamp as ADF accepts it (ISO 8601, ``M/d/yyyy [h:mm[:ss] [AM|PM]]``, RFC 1123).

    Raises: FunctionFailure.
    """
    match = _ISO.fullmatch(text) or _US.fullmatch(text) or _RFC1123.fullmatch(text)
    if match is None:
        raise FunctionFailure(f"{text!r} is not a timestamp ADF can read")
    groups = match.groupdict()
    try:
        if groups.get("mon"):
            month = [m[:3].lower() for m in _MONTHS].index(groups["mon"].lower()) + 1
        else:
            month = int(groups["mo"])
        hour = int(groups["h"] or 0)
        if groups["ampm"]:
            if not 1 <= hour <= 12:
                raise ValueError("hour must be 1-12 with AM/PM")
            hour = hour % 12 + (12 if groups["ampm"].upper() == "PM" else 0)
        wall = datetime(int(groups["y"]), month, int(groups["d"]), hour, int(groups["mi"] or 0), int(groups["s"] or 0))
    except ValueError as exc:
        raise FunctionFailure(f"{text!r} is not a valid timestamp: {exc}") from None
    stamp = Stamp.from_datetime(wall, utc=False, extra_ticks=_fraction_ticks(groups["f"]))
    zone = (groups["tz"] or "").upper()
    if not zone:
        return stamp
    offset = 0
    if zone[0] in "+-":
        hours, minutes = int(zone[1:3]), int(zone[3:].lstrip(":") or 0)
        if hours > 14 or minutes > 59:
            raise FunctionFailure(f"{text!r} has an invalid UTC offset")
        offset = (hours * 60 + minutes) * 60 * TICKS_PER_SECOND * (1 if zone[0] == "+" else -1)
    return Stamp(stamp.ticks - offset, True)


def format_timestamp(stamp: Stamp, fmt: str | None = None) -> str:
    """Format like .NET ``DateTime.ToString(fmt)``; the default is ``o``. Raises: FunctionFailure."""
    if not fmt:
        fmt = "o"
    if len(fmt) == 1:
        pattern = STANDARD_FORMATS.get(fmt)
        if pattern is None:
            raise FunctionFailure(f"{fmt!r} is not a .NET standard date format (use '%{fmt}' for the custom one)")
        return _custom(stamp, pattern)
    return _custom(stamp, fmt)


def _field(stamp: Stamp, wall: datetime, char: str, count: int) -> str:
    """One custom format specifier (``char`` repeated ``count`` times)."""
    fraction = f"{wall.microsecond * 10 + stamp.ticks % 10:07d}"
    hour12 = wall.hour % 12 or 12
    weekday = _DAYS[(wall.weekday() + 1) % 7]
    month = _MONTHS[wall.month - 1]
    if char == "d":
        return [str(wall.day), f"{wall.day:02d}", weekday[:3]][count - 1] if count < 4 else weekday
    if char == "M":
        return [str(wall.month), f"{wall.month:02d}", month[:3]][count - 1] if count < 4 else month
    if char == "y":
        if count <= 2:
            return f"{wall.year % 100:0{count}d}"
        return f"{wall.year:0{count}d}"
    if char in "hHms":
        value = {"h": hour12, "H": wall.hour, "m": wall.minute, "s": wall.second}[char]
        return str(value) if count == 1 else f"{value:02d}"
    if char in "fF":
        if count > 7:
            raise FunctionFailure(f"format specifier {char * count!r} is too long (at most 7)")
        return fraction[:count] if char == "f" else fraction[:count].rstrip("0")
    if char == "t":
        marker = "AM" if wall.hour < 12 else "PM"
        return marker[0] if count == 1 else marker
    if char == "z":
        # Unspecified and UTC values format their zone as the machine's offset: ADF's machines run on UTC.
        return ["+0", "+00"][count - 1] if count < 3 else "+00:00"
    if char == "K":
        return "Z" * count if stamp.utc else ""
    if char == "g":
        return "A.D."
    return char * count  # ':' and '/' in en-US, and any other literal


def _custom(stamp: Stamp, fmt: str) -> str:
    wall = stamp.wall()
    out: list[str] = []
    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c in "'\"":
            end = i + 1
            literal: list[str] = []
            while end < n and fmt[end] != c:
                if fmt[end] == "\\" and end + 1 < n:
                    end += 1
                literal.append(fmt[end])
                end += 1
            if end >= n:
                raise FunctionFailure(f"format {fmt!r} has an unterminated quote")
            out.append("".join(literal))
            i = end + 1
            continue
        if c in "%\\":
            if i + 1 >= n or (c == "%" and fmt[i + 1] == "%"):
                raise FunctionFailure(f"format {fmt!r} ends with a dangling {c!r}")
            out.append(fmt[i + 1] if c == "\\" else _field(stamp, wall, fmt[i + 1], 1))
            i += 2
            continue
        run = 1
        while i + run < n and fmt[i + run] == c:
            run += 1
        if c in "dMyhHmsfFtzKg":
            text = _field(stamp, wall, c, run)
            if c == "F" and not text and out and out[-1].endswith("."):
                out[-1] = out[-1][:-1]  # .NET drops the '.' before an all-zero F fraction
            out.append(text)
        else:
            out.append(c * run)
        i += run
    return "".join(out)
