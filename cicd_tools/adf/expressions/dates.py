"""ADF date and time functions: utcNow, add*/subtract*, time zone conversions, startOf*, dayOf*, ticks.

Results are strings in .NET format ``o`` unless a format argument is given (see ``expr_datefmt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cicd_tools.adf.expressions.datefmt import (
    MAX_TICKS,
    TICKS_PER_DAY,
    TICKS_PER_SECOND,
    Stamp,
    format_timestamp,
    parse_timestamp,
)
from cicd_tools.adf.expressions.timezones import is_utc_zone, resolve_zone
from cicd_tools.adf.expressions.types import Env, FunctionFailure, FunctionSpec, Impl
from cicd_tools.adf.expressions.values import type_name, want_number, want_str

_UNIT_TICKS = {
    "second": TICKS_PER_SECOND,
    "minute": 60 * TICKS_PER_SECOND,
    "hour": 3600 * TICKS_PER_SECOND,
    "day": TICKS_PER_DAY,
    "week": 7 * TICKS_PER_DAY,
}
_UNIT_MONTHS = {"month": 1, "year": 12}


def _stamp(value: Any, what: str = "timestamp") -> Stamp:
    return parse_timestamp(want_str(value, what))


def _format(stamp: Stamp, args: Sequence[Any], index: int) -> str:
    fmt = want_str(args[index], "format") if len(args) > index and args[index] is not None else None
    return format_timestamp(stamp, fmt)


def _shift(stamp: Stamp, amount: Any, unit_ticks: int) -> Stamp:
    number = want_number(amount, "interval")
    if isinstance(number, int):
        return stamp.plus_ticks(number * unit_ticks)
    # .NET's Add*(double) rounds to the nearest millisecond.
    milliseconds = number * unit_ticks / 10_000
    if not abs(milliseconds) <= MAX_TICKS:  # also catches inf and nan
        raise FunctionFailure("the timestamp falls outside years 0001 to 9999")
    return stamp.plus_ticks(round(milliseconds) * 10_000)


def _add_unit(unit_ticks: int) -> Impl:
    def impl(args: Sequence[Any], env: Env) -> str:
        return _format(_shift(_stamp(args[0]), args[1], unit_ticks), args, 2)

    return impl


def _shift_by_unit(stamp: Stamp, interval: Any, unit: Any, sign: int) -> Stamp:
    unit_name = want_str(unit, "timeUnit").strip().lower()
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise FunctionFailure(f"interval must be an Integer, got {type_name(interval)}")
    if unit_name in _UNIT_TICKS:
        return stamp.plus_ticks(sign * interval * _UNIT_TICKS[unit_name])
    if unit_name in _UNIT_MONTHS:
        return stamp.plus_months(sign * interval * _UNIT_MONTHS[unit_name])
    raise FunctionFailure(f"timeUnit must be Second, Minute, Hour, Day, Week, Month or Year, got {unit!r}")


def _now(env: Env) -> Stamp:
    return Stamp.from_datetime(env.now().replace(tzinfo=None), utc=True)


def _add_to_time(args: Sequence[Any], env: Env) -> str:
    return _format(_shift_by_unit(_stamp(args[0]), args[1], args[2], 1), args, 3)


def _subtract_from_time(args: Sequence[Any], env: Env) -> str:
    return _format(_shift_by_unit(_stamp(args[0]), args[1], args[2], -1), args, 3)


def _get_future_time(args: Sequence[Any], env: Env) -> str:
    return _format(_shift_by_unit(_now(env), args[0], args[1], 1), args, 2)


def _get_past_time(args: Sequence[Any], env: Env) -> str:
    return _format(_shift_by_unit(_now(env), args[0], args[1], -1), args, 2)


def _convert(stamp: Stamp, source: Any, target: Any) -> Stamp:
    """Read ``stamp``'s wall clock in zone ``source`` and return the wall clock in zone ``target``."""
    source_zone = resolve_zone(want_str(source, "sourceTimeZone"))
    target_name = want_str(target, "destinationTimeZone")
    target_zone = resolve_zone(target_name)
    local = stamp.wall().replace(tzinfo=source_zone)
    try:
        moved = local.astimezone(target_zone).replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise FunctionFailure("the converted timestamp falls outside years 0001 to 9999") from None
    # Like .NET, the result is UTC-kind only when the target is UTC; otherwise it carries no zone.
    return Stamp.from_datetime(moved, utc=is_utc_zone(target_name), extra_ticks=stamp.ticks % 10)


def _convert_from_utc(args: Sequence[Any], env: Env) -> str:
    return _format(_convert(_stamp(args[0]), "UTC", args[1]), args, 2)


def _convert_to_utc(args: Sequence[Any], env: Env) -> str:
    return _format(_convert(_stamp(args[0]), args[1], "UTC"), args, 2)


def _convert_time_zone(args: Sequence[Any], env: Env) -> str:
    return _format(_convert(_stamp(args[0]), args[1], args[2]), args, 3)


def _start_of(unit: str) -> Impl:
    def impl(args: Sequence[Any], env: Env) -> str:
        stamp = _stamp(args[0])
        wall = stamp.wall()
        if unit == "day":
            wall = wall.replace(hour=0, minute=0, second=0, microsecond=0)
        elif unit == "hour":
            wall = wall.replace(minute=0, second=0, microsecond=0)
        else:
            wall = wall.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return _format(Stamp.from_datetime(wall, utc=stamp.utc), args, 1)

    return impl


def _utc_now(args: Sequence[Any], env: Env) -> str:
    return _format(_now(env), args, 0)


def _day_of_week(args: Sequence[Any], env: Env) -> int:
    return (_stamp(args[0]).wall().weekday() + 1) % 7  # .NET DayOfWeek: Sunday is 0


def _spec(name: str, low: int, high: int | None, impl: Impl) -> tuple[str, FunctionSpec]:
    return name.lower(), FunctionSpec(name, low, high, impl)


DATE_FUNCTIONS: dict[str, FunctionSpec] = dict(
    [
        _spec("utcNow", 0, 1, _utc_now),
        _spec("addDays", 2, 3, _add_unit(TICKS_PER_DAY)),
        _spec("addHours", 2, 3, _add_unit(3600 * TICKS_PER_SECOND)),
        _spec("addMinutes", 2, 3, _add_unit(60 * TICKS_PER_SECOND)),
        _spec("addSeconds", 2, 3, _add_unit(TICKS_PER_SECOND)),
        _spec("addToTime", 3, 4, _add_to_time),
        _spec("subtractFromTime", 3, 4, _subtract_from_time),
        _spec("getFutureTime", 2, 3, _get_future_time),
        _spec("getPastTime", 2, 3, _get_past_time),
        _spec("convertFromUtc", 2, 3, _convert_from_utc),
        _spec("convertToUtc", 2, 3, _convert_to_utc),
        _spec("convertTimeZone", 3, 4, _convert_time_zone),
        _spec("dayOfMonth", 1, 1, lambda a, e: _stamp(a[0]).wall().day),
        _spec("dayOfWeek", 1, 1, _day_of_week),
        _spec("dayOfYear", 1, 1, lambda a, e: _stamp(a[0]).wall().timetuple().tm_yday),
        _spec("formatDateTime", 1, 2, lambda a, e: _format(_stamp(a[0]), a, 1)),
        _spec("startOfDay", 1, 2, _start_of("day")),
        _spec("startOfHour", 1, 2, _start_of("hour")),
        _spec("startOfMonth", 1, 2, _start_of("month")),
        _spec("ticks", 1, 1, lambda a, e: _stamp(a[0]).ticks),
    ]
)
