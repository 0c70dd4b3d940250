"""ADF date functions and .NET date formatting: documented examples, kinds (Z or not), custom formats, zones."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from cicd_tools.adf.expressions import EvalContext, ExpressionError, evaluate_value
from cicd_tools.adf.expressions.timezones import WINDOWS_TO_IANA, resolve_zone


def ev(value: str, now: datetime | None = None) -> Any:
    return evaluate_value("@" + value, EvalContext(now=(lambda: now) if now else None))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # The page prints "2018-03-25T00:00:0000000Z": a typo (the hour and the '.' are lost).
        ("addDays('2018-03-15T13:00:00Z', 10)", "2018-03-25T13:00:00.0000000Z"),
        ("addDays('2018-03-15T00:00:00Z', -5)", "2018-03-10T00:00:00.0000000Z"),
        ("addHours('2018-03-15T00:00:00Z', 10)", "2018-03-15T10:00:00.0000000Z"),
        ("addHours('2018-03-15T15:00:00Z', -5)", "2018-03-15T10:00:00.0000000Z"),
        ("addMinutes('2018-03-15T00:10:00Z', 10)", "2018-03-15T00:20:00.0000000Z"),
        ("addMinutes('2018-03-15T00:20:00Z', -5)", "2018-03-15T00:15:00.0000000Z"),
        ("addSeconds('2018-03-15T00:00:00Z', 10)", "2018-03-15T00:00:10.0000000Z"),
        ("addSeconds('2018-03-15T00:00:30Z', -5)", "2018-03-15T00:00:25.0000000Z"),
        ("addToTime('2018-01-01T00:00:00Z', 1, 'Day')", "2018-01-02T00:00:00.0000000Z"),
        ("addToTime('2018-01-01T00:00:00Z', 1, 'Day', 'D')", "Tuesday, January 2, 2018"),
        ("convertFromUtc('2018-01-01T08:00:00.0000000Z', 'Pacific Standard Time', 'D')", "Monday, January 1, 2018"),
        (
            "convertTimeZone('2018-01-01T08:00:00.0000000Z', 'UTC', 'Pacific Standard Time')",
            "2018-01-01T00:00:00.0000000",
        ),
        (
            "convertTimeZone('2018-01-01T08:00:00.0000000Z', 'UTC', 'Pacific Standard Time', 'D')",
            "Monday, January 1, 2018",
        ),
        ("convertToUtc('01/01/2018 00:00:00', 'Pacific Standard Time')", "2018-01-01T08:00:00.0000000Z"),
        ("convertToUtc('01/01/2018 00:00:00', 'Pacific Standard Time', 'D')", "Monday, January 1, 2018"),
        ("dayOfMonth('2018-03-15T13:27:36Z')", 15),
        ("dayOfYear('2018-03-15T13:27:36Z')", 74),
        ("formatDateTime('03/15/2018 12:00:00', 'yyyy-MM-ddTHH:mm:ss')", "2018-03-15T12:00:00"),
        ("startOfDay('2018-03-15T13:30:30Z')", "2018-03-15T00:00:00.0000000Z"),
        ("startOfHour('2018-03-15T13:30:30Z')", "2018-03-15T13:00:00.0000000Z"),
        ("startOfMonth('2018-03-15T13:30:30Z')", "2018-03-01T00:00:00.0000000Z"),
        # The page prints "...T00:00:00:0000000Z" and "Monday, January, 1, 2018": typos.
        ("subtractFromTime('2018-01-02T00:00:00Z', 1, 'Day')", "2018-01-01T00:00:00.0000000Z"),
        ("subtractFromTime('2018-01-02T00:00:00Z', 1, 'Day', 'D')", "Monday, January 1, 2018"),
        # Documented for the same function library in Logic Apps:
        ("formatDateTime('03/15/2018')", "2018-03-15T00:00:00.0000000"),
        ("formatDateTime('01/31/2016', 'dddd MMMM d')", "Sunday January 31"),
    ],
)
def test_documented_date_examples(expression: str, expected: Any) -> None:
    assert ev(expression) == expected


def test_convert_from_utc_gives_a_wall_clock_time_without_a_zone() -> None:
    # The ADF page prints "2018-01-01T00:00:00Z"; .NET's conversion result carries no zone, so 'o' omits it
    # (the Logic Apps page for the same function prints "2018-01-01T00:00:00.0000000").
    assert (
        ev("convertFromUtc('2018-01-01T08:00:00.0000000Z', 'Pacific Standard Time')") == "2018-01-01T00:00:00.0000000"
    )


def test_day_of_week_counts_from_sunday_as_zero() -> None:
    # 2018-03-15 is a Thursday. The page says Sunday is 0 but prints 3 for this date; .NET DayOfWeek gives 4.
    assert date(2018, 3, 15).isoweekday() == 4
    assert ev("dayOfWeek('2018-03-15T13:27:36Z')") == 4
    assert ev("dayOfWeek('2018-03-18T00:00:00Z')") == 0


def test_utc_now_uses_the_injected_clock_and_format() -> None:
    now = datetime(2018, 4, 15, 13, 0, tzinfo=UTC)
    assert ev("utcNow()", now) == "2018-04-15T13:00:00.0000000Z"
    assert ev("utcNow('D')", now) == "Sunday, April 15, 2018"
    assert ev("utcnow('yyyyMMdd')", now) == "20180415"


def test_utc_now_converts_an_aware_clock_to_utc_and_treats_naive_as_utc() -> None:
    from datetime import timedelta, timezone

    plus_two = datetime(2018, 4, 15, 15, 0, tzinfo=timezone(timedelta(hours=2)))
    assert ev("utcNow()", plus_two) == "2018-04-15T13:00:00.0000000Z"
    assert ev("utcNow()", datetime(2018, 4, 15, 13, 0, 0, 123456)) == "2018-04-15T13:00:00.1234560Z"


def test_documented_future_and_past_time_examples() -> None:
    assert ev("getFutureTime(5, 'Day')", datetime(2018, 3, 1, tzinfo=UTC)) == "2018-03-06T00:00:00.0000000Z"
    assert ev("getFutureTime(5, 'Day', 'D')", datetime(2018, 3, 1, tzinfo=UTC)) == "Tuesday, March 6, 2018"
    assert ev("getPastTime(5, 'Day')", datetime(2018, 2, 1, tzinfo=UTC)) == "2018-01-27T00:00:00.0000000Z"
    assert ev("getPastTime(5, 'Day', 'D')", datetime(2018, 2, 1, tzinfo=UTC)) == "Saturday, January 27, 2018"


def test_ticks_counts_100ns_since_year_one() -> None:
    expected = (date(2018, 3, 15).toordinal() - 1) * 864_000_000_000 + 13 * 36_000_000_000
    assert ev("ticks('2018-03-15T13:00:00Z')") == expected == 636567156000000000
    assert ev("ticks('0001-01-01T00:00:00.0000001Z')") == 1


def test_month_and_year_arithmetic_clamps_to_the_end_of_the_month() -> None:
    assert ev("addToTime('2018-01-31T10:00:00Z', 1, 'Month')") == "2018-02-28T10:00:00.0000000Z"
    assert ev("addToTime('2020-02-29T00:00:00Z', 1, 'Year')") == "2021-02-28T00:00:00.0000000Z"
    assert ev("subtractFromTime('2018-03-31T00:00:00Z', 1, 'month')") == "2018-02-28T00:00:00.0000000Z"
    assert ev("addToTime('2018-01-01T00:00:00Z', 2, 'Week')") == "2018-01-15T00:00:00.0000000Z"


def test_unknown_time_unit_is_reported() -> None:
    with pytest.raises(ExpressionError, match="timeUnit must be Second, Minute"):
        ev("addToTime('2018-01-01T00:00:00Z', 1, 'Fortnight')")


def test_timestamps_keep_seven_fraction_digits_and_their_kind() -> None:
    assert ev("formatDateTime('2018-03-15T13:00:00.1234567Z')") == "2018-03-15T13:00:00.1234567Z"
    assert ev("addSeconds('2018-03-15T13:00:00.5', 1)") == "2018-03-15T13:00:01.5000000"
    assert ev("formatDateTime('2018-03-15 13:00')") == "2018-03-15T13:00:00.0000000"


def test_offsets_are_converted_to_utc() -> None:
    assert ev("formatDateTime('2018-03-15T13:00:00+02:00')") == "2018-03-15T11:00:00.0000000Z"
    assert ev("formatDateTime('2018-03-15T13:00:00-0530')") == "2018-03-15T18:30:00.0000000Z"


def test_us_and_rfc1123_timestamps_parse() -> None:
    assert ev("formatDateTime('3/5/2018 1:30 PM', 's')") == "2018-03-05T13:30:00"
    assert ev("formatDateTime('Sun, 15 Apr 2018 13:00:00 GMT')") == "2018-04-15T13:00:00.0000000Z"


@pytest.mark.parametrize("text", ["yesterday", "2018-13-01", "2018-02-30T00:00:00Z", "13:00", "2018-03-15T25:00:00"])
def test_unreadable_timestamps_are_expression_errors(text: str) -> None:
    with pytest.raises(ExpressionError, match="timestamp"):
        ev(f"formatDateTime('{text}')")


STAMP = "'2009-06-15T13:45:30.6175425Z'"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("d", "6/15/2009"),
        ("D", "Monday, June 15, 2009"),
        ("f", "Monday, June 15, 2009 1:45 PM"),
        ("F", "Monday, June 15, 2009 1:45:30 PM"),
        ("g", "6/15/2009 1:45 PM"),
        ("G", "6/15/2009 1:45:30 PM"),
        ("M", "June 15"),
        ("o", "2009-06-15T13:45:30.6175425Z"),
        ("r", "Mon, 15 Jun 2009 13:45:30 GMT"),
        ("s", "2009-06-15T13:45:30"),
        ("t", "1:45 PM"),
        ("T", "1:45:30 PM"),
        ("u", "2009-06-15 13:45:30Z"),
        ("y", "June 2009"),
        ("yyyy-MM-dd HH:mm:ss.fff", "2009-06-15 13:45:30.617"),
        ("yy/M/d h:m:s tt", "09/6/15 1:45:30 PM"),
        ("ddd dd MMM", "Mon 15 Jun"),
        ("fffffff FFFFFFF F", "6175425 6175425 6"),
        ("HH'h'mm \\a\\t K zzz", "13h45 at Z +00:00"),
        ('"literal" yyyy', "literal 2009"),
        ("%d", "15"),
        ("yyyyMMddTHHmmssZ", "20090615T134530Z"),
        ("g", "6/15/2009 1:45 PM"),
    ],
)
def test_dotnet_standard_and_custom_formats(fmt: str, expected: str) -> None:
    quoted = fmt.replace("'", "''")
    assert ev(f"formatDateTime({STAMP}, '{quoted}')") == expected


def test_f_specifier_drops_trailing_zeros_and_the_point_before_an_all_zero_fraction() -> None:
    assert ev("formatDateTime('2009-06-15T13:45:30.5000000Z', 'ss.FFF')") == "30.5"
    assert ev("formatDateTime('2009-06-15T13:45:30Z', 'ss.FFF')") == "30"


@pytest.mark.parametrize(("fmt", "message"), [("Q", "not a .NET standard date format"), ("'open", "unterminated quote"),
                                              ("ffffffff", "too long"), ("yyyy\\", "dangling")])  # fmt: skip
def test_bad_formats_are_expression_errors(fmt: str, message: str) -> None:
    quoted = fmt.replace("'", "''")
    with pytest.raises(ExpressionError, match=message):
        ev(f"formatDateTime({STAMP}, '{quoted}')")


def test_convert_time_zone_follows_daylight_saving_and_marks_utc_targets() -> None:
    assert ev("convertFromUtc('2018-07-01T12:00:00Z', 'W. Europe Standard Time')") == "2018-07-01T14:00:00.0000000"
    assert ev("convertTimeZone('2018-07-01T14:00:00', 'W. Europe Standard Time', 'UTC')") == (
        "2018-07-01T12:00:00.0000000Z"
    )
    assert ev("convertToUtc('2018-01-01T00:00:00', 'india standard time')") == "2017-12-31T18:30:00.0000000Z"


def test_time_zones_must_be_windows_ids() -> None:
    with pytest.raises(ExpressionError, match="ADF takes Windows IDs"):
        ev("convertFromUtc('2018-01-01T00:00:00Z', 'America/Los_Angeles')")
    with pytest.raises(ExpressionError, match="unknown time zone 'Mars Standard Time'"):
        ev("convertFromUtc('2018-01-01T00:00:00Z', 'Mars Standard Time')")


def test_every_windows_zone_in_the_table_resolves() -> None:
    for name in WINDOWS_TO_IANA:
        resolve_zone(name)


def test_dates_outside_dotnet_range_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="outside years 0001 to 9999"):
        ev("addDays('9999-12-31T00:00:00Z', 1)")
    with pytest.raises(ExpressionError, match="outside years 0001 to 9999"):
        ev("addDays('2018-01-01T00:00:00Z', 1e300)")
