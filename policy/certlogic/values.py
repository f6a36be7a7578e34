"""CertLogic values: JSON values plus the date-time that only ``plusTime`` and ``dccDateOfBirth`` construct.

A date-time is an instant in whole milliseconds since the epoch, computed with the proleptic Gregorian calendar
exactly as ECMAScript's ``Date`` does (the specification defines ``plusTime`` through ``setUTC<unit>``), so day
overflow, leap days and the ±8.64e15 ms range behave as in the reference implementation, with no dependency on
Python's ``datetime`` limits (years 1-9999).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from policy.certlogic.errors import CertLogicError, CertLogicTooCostlyError

__all__ = [
    "TIME_UNITS",
    "DateTime",
    "Json",
    "Value",
    "boolsiness",
    "date_of_birth",
    "is_int",
    "json_equal",
    "parse_date_time",
    "plus_time",
    "strictly_equal",
    "to_json",
]

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"
TimeUnit = Literal["year", "month", "day", "hour"]
TIME_UNITS: Final[tuple[TimeUnit, ...]] = ("year", "month", "day", "hour")

_MS_PER_DAY: Final = 86_400_000
_MS_PER_HOUR: Final = 3_600_000
_MAX_MS: Final = 8_640_000_000_000_000  # ECMA-262 TimeClip: beyond this a Date is invalid


@dataclass(frozen=True, slots=True)
class DateTime:
    """An instant, in milliseconds since 1970-01-01T00:00:00Z."""

    ms: int

    def iso(self) -> str:
        """``Date.prototype.toISOString``: ``YYYY-MM-DDTHH:mm:ss.sssZ`` (six-digit signed years outside 0-9999)."""
        days, rest = divmod(self.ms, _MS_PER_DAY)
        year, month, day = _civil_from_days(days)
        hour, rest = divmod(rest, _MS_PER_HOUR)
        minute, rest = divmod(rest, 60_000)
        second, milli = divmod(rest, 1000)
        year_text = f"{year:04d}" if 0 <= year <= 9999 else f"{'+' if year > 0 else '-'}{abs(year):06d}"
        return f"{year_text}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


# What an evaluation can produce: JSON, or JSON holding date-times (only plusTime / dccDateOfBirth make them).
Value: TypeAlias = "bool | int | float | str | DateTime | list[Value] | dict[str, Value] | None"


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, for any integer year (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _make_day(year: int, month0: int, day: int) -> int:
    """ECMA-262 MakeDay: a month outside 0-11 carries into the year, a day outside the month into the next."""
    year += month0 // 12
    return _days_from_civil(year, month0 % 12 + 1, 1) + day - 1


def _clip(ms: int) -> DateTime:
    if abs(ms) > _MAX_MS:
        raise CertLogicError("date-time outside the representable range")
    return DateTime(ms)


def _days_in_month(year: int, month: int) -> int:
    return _days_from_civil(year + (month == 12), month % 12 + 1, 1) - _days_from_civil(year, month, 1)


def _date(year: int, month: int, day: int) -> int:
    # An impossible calendar date is undefined behaviour in the specification (1.3.3, plusTime); the reference
    # implementation gets an invalid Date. Refusing it keeps the answer from depending on one engine's parser.
    if not 1 <= month <= 12 or not 1 <= day <= _days_in_month(year, month):
        raise CertLogicError("not a calendar date")
    return _days_from_civil(year, month, day)


_YEAR = re.compile(r"(\d{4})", re.ASCII)  # JavaScript's \d: ASCII digits only
_YEAR_MONTH = re.compile(r"(\d{4})-(\d{2})", re.ASCII)
_FULL_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|([+-])(\d{1,2}):?(\d{2})?)?", re.ASCII
)


def date_of_birth(text: str) -> DateTime:
    """``dccDateOfBirth``: the last instant consistent with ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (at 00:00Z).

    :raises CertLogicError: any other form.
    """
    if match := _YEAR.fullmatch(text):
        return _clip(_date(int(match[1]), 12, 31) * _MS_PER_DAY)
    if match := _YEAR_MONTH.fullmatch(text):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise CertLogicError("not a calendar month")
        return _clip(_date(year, month, _days_in_month(year, month)) * _MS_PER_DAY)
    if match := _FULL_DATE.fullmatch(text):
        return _clip(_date(int(match[1]), int(match[2]), int(match[3])) * _MS_PER_DAY)
    raise CertLogicError("not a DCC date of birth (YYYY[-MM[-DD]])")


def parse_date_time(text: str) -> DateTime:
    """A date or date-time string in one of the specification's formats (1.3.3, ``plusTime``).

    A partial date reads as ``dccDateOfBirth`` reads it; a missing time is midnight, a missing offset ``Z``;
    fractions are cut (not rounded) to milliseconds.

    :raises CertLogicError: not an allowed format, or not a calendar date / time.
    """
    if _YEAR.fullmatch(text) or _YEAR_MONTH.fullmatch(text) or _FULL_DATE.fullmatch(text):
        return date_of_birth(text)
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise CertLogicError("not an allowed date or date-time format")
    days = _date(int(match[1]), int(match[2]), int(match[3]))
    hour, minute, second = int(match[4]), int(match[5]), int(match[6])
    if hour > 23 or minute > 59 or second > 59:
        raise CertLogicError("not a time of day")
    milli = int((match[7] or "0")[:3].ljust(3, "0"))
    offset_ms = 0
    if match[8] not in (None, "Z"):
        off_hours, off_minutes = int(match[10]), int(match[11] or "0")
        if off_hours > 23 or off_minutes > 59:
            raise CertLogicError("not a time-zone offset")
        offset_ms = (off_hours * 60 + off_minutes) * 60_000 * (1 if match[9] == "+" else -1)
    ms = days * _MS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + milli - offset_ms
    return _clip(ms)


def plus_time(moment: DateTime, amount: int, unit: TimeUnit) -> DateTime:
    """``dateTime.setUTC<unit>(dateTime.getUTC<unit>() + amount)`` (specification 1.3.3, ``plusTime``)."""
    if unit == "hour":
        return _clip(moment.ms + amount * _MS_PER_HOUR)
    if unit == "day":
        return _clip(moment.ms + amount * _MS_PER_DAY)
    days, time_ms = divmod(moment.ms, _MS_PER_DAY)
    year, month, day = _civil_from_days(days)
    # setUTCMonth / setUTCFullYear keep the day of the month and let MakeDay carry an overflow.
    month0, year = (month - 1 + amount, year) if unit == "month" else (month - 1, year + amount)
    return _clip(_make_day(year, month0, day) * _MS_PER_DAY + time_ms)


def is_int(value: object) -> bool:
    """An integer number as JavaScript sees one (``Number.isInteger``): ``2.0`` is one, ``true`` is not."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def boolsiness(value: Value) -> bool | None:
    """True for truthy, False for falsy, None for neither (a date-time; specification "Truthy and falsy")."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def strictly_equal(left: Value, right: Value) -> bool:
    """JavaScript ``===``: scalars by type and value, arrays, objects and date-times by identity."""
    kind = _kind(left)
    if kind != _kind(right):
        return False
    if kind == "object":
        return left is right
    return left == right


def to_json(value: Value, *, max_nodes: int = 100_000, max_depth: int = 64) -> Json:
    """The JSON form of a result (a date-time renders as ``toISOString``), refusing results too big to render.

    A ``reduce`` can build a value whose rendering doubles at each step from shared parts (``[acc, acc]``).

    :raises CertLogicTooCostlyError: more than ``max_nodes`` values or deeper than ``max_depth``.
    """
    budget = [max_nodes]

    def render(item: Value, depth: int) -> Json:
        budget[0] -= 1
        if budget[0] < 0 or depth > max_depth:
            raise CertLogicTooCostlyError("result too large to render")
        if isinstance(item, DateTime):
            return item.iso()
        if isinstance(item, list):
            return [render(part, depth + 1) for part in item]
        if isinstance(item, dict):
            return {key: render(part, depth + 1) for key, part in item.items()}
        if isinstance(item, float) and item.is_integer() and abs(item) < 2**63:
            return int(item)
        return item

    return render(value, 0)


def json_equal(left: Json, right: Json) -> bool:
    """Deep equality as JSON: same types (``true`` is not ``1``), numbers by value, objects by key set."""
    if _kind(left) != _kind(right):
        return False
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[key], right[key]) for key in left)
    if isinstance(left, list | dict) or isinstance(right, list | dict):
        return False
    return left == right
