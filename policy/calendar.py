"""Working-hours calendars: a stage whose clock counts only working time (docs/dispatch.md, "Working time").

A calendar is a TOML document (``PLACEGATE_DISPATCH_CALENDAR_FILE``)::

    utc_offset = "+08:00"                     # the local time the hours are written in (no daylight saving)
    holidays = ["2026-10-01", "2026-10-02"]  # local dates without working time
    [hours]
    mon = ["08:30-12:00", "13:30-17:30"]      # a weekday left out has no working time
    tue = ["08:30-12:00", "13:30-17:30"]

``add_working_time(start, budget)`` is the instant at which ``budget`` of working time has passed from ``start``.
``ALWAYS`` (24x7, no holidays) adds the budget as wall-clock time: the default, today's behaviour.
A fixed UTC offset, not a time-zone name: the policy layer reads no time-zone database, and a city that changes
its clocks sets the offset of the season (a stage spanning the change is off by the shift, at most an hour).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from itertools import pairwise
from types import MappingProxyType

__all__ = ["ALWAYS", "DAYS", "InvalidCalendarError", "WorkingCalendar", "add_working_time", "parse_calendar"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"(?P<sh>[0-2][0-9]):(?P<sm>[0-5][0-9])-(?P<eh>[0-2][0-9]):(?P<em>[0-5][0-9])")
_OFFSET = re.compile(r"(?P<sign>[+-])(?P<h>[0-1][0-9]):(?P<m>[0-5][0-9])")
_DAY = timedelta(days=1)
# A budget is at most a year (policy.deadlines); with one working minute a week that is ~10^4 years of days: the
# search stops long before, at a bound no real calendar reaches.
_MAX_DAYS = 50 * 366


class InvalidCalendarError(ValueError):
    """The calendar does not parse or has no working time at all."""


Span = tuple[timedelta, timedelta]  # from, to: offsets into the local day, from < to


@dataclass(frozen=True, slots=True)
class WorkingCalendar:
    """Working spans per weekday (Monday = 0), holidays (local dates) and the local UTC offset."""

    hours: Mapping[int, tuple[Span, ...]] = field(default_factory=lambda: MappingProxyType({}))
    holidays: frozenset[date] = frozenset()
    offset: timedelta = timedelta(0)
    always: bool = False  # 24x7 without holidays: wall-clock time

    def working_on(self, day: date) -> tuple[Span, ...]:
        return () if day in self.holidays else self.hours.get(day.weekday(), ())


ALWAYS = WorkingCalendar(always=True)


def add_working_time(calendar: WorkingCalendar, start: datetime, budget: timedelta) -> datetime:
    """The instant ``budget`` of ``calendar``'s working time after ``start`` (aware), in ``start``'s zone.
    Time outside working hours does not count; a budget that ends exactly at the end of a span ends there.

    :raises InvalidCalendarError: the budget cannot be spent within the search bound (no working time ahead).
    """
    if calendar.always or budget <= timedelta(0):
        return start + budget
    zone = timezone(calendar.offset)
    local = start.astimezone(zone)
    day, remaining = local.date(), budget
    for _ in range(_MAX_DAYS):
        midnight = datetime.combine(day, time(0), zone)
        for begin, end in calendar.working_on(day):
            span_start = max(local, midnight + begin)
            span_end = midnight + end
            if span_start >= span_end:
                continue
            if remaining <= span_end - span_start:
                return (span_start + remaining).astimezone(start.tzinfo)
            remaining -= span_end - span_start
        day += _DAY
    raise InvalidCalendarError("no working time within the search bound")


def _spans(raw: object, where: str) -> tuple[Span, ...]:
    if not isinstance(raw, list):
        raise InvalidCalendarError(f"{where} must be a list of \"HH:MM-HH:MM\"")
    spans: list[Span] = []
    for item in raw:
        m = _SPAN.fullmatch(item) if isinstance(item, str) else None
        if m is None:
            raise InvalidCalendarError(f"{where}: {str(item)[:20]!r} is not HH:MM-HH:MM")
        begin = timedelta(hours=int(m["sh"]), minutes=int(m["sm"]))
        end = timedelta(hours=int(m["eh"]), minutes=int(m["em"]))
        if not begin < end <= _DAY:
            raise InvalidCalendarError(f"{where}: {item!r} must start before it ends, by 24:00")
        spans.append((begin, end))
    spans.sort()
    for (_, end), (begin, _) in pairwise(spans):
        if begin < end:
            raise InvalidCalendarError(f"{where}: spans overlap")
    return tuple(spans)


def parse_calendar(text: str) -> WorkingCalendar:
    """Parse and validate a calendar. :raises InvalidCalendarError: naming the fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidCalendarError(f"not valid TOML: {exc}") from None
    if unknown := set(data) - {"utc_offset", "holidays", "hours"}:
        raise InvalidCalendarError(f"unknown keys {sorted(unknown)}")
    m = _OFFSET.fullmatch(data.get("utc_offset", "+00:00")) if isinstance(data.get("utc_offset", ""), str) else None
    if m is None or int(m["h"]) > 14:
        raise InvalidCalendarError("utc_offset must be +HH:MM or -HH:MM, at most 14 h")
    offset = (1 if m["sign"] == "+" else -1) * timedelta(hours=int(m["h"]), minutes=int(m["m"]))
    hours_raw = data.get("hours", {})
    if not isinstance(hours_raw, dict) or set(hours_raw) - set(DAYS):
        raise InvalidCalendarError(f"hours must be a table of {', '.join(DAYS)}")
    hours = {DAYS.index(name): _spans(raw, f"hours.{name}") for name, raw in hours_raw.items()}
    if not any(hours.values()):
        raise InvalidCalendarError("no working time in the week")
    holidays_raw = data.get("holidays", [])
    if not isinstance(holidays_raw, list):
        raise InvalidCalendarError("holidays must be a list of YYYY-MM-DD dates")
    holidays: set[date] = set()
    for item in holidays_raw:
        try:
            holidays.add(item if isinstance(item, date) and not isinstance(item, datetime)
                         else date.fromisoformat(str(item)))  # fmt: skip
        except ValueError:
            raise InvalidCalendarError(f"holidays: {str(item)[:20]!r} is not a YYYY-MM-DD date") from None
    return WorkingCalendar(MappingProxyType({d: s for d, s in hours.items() if s}), frozenset(holidays), offset)
