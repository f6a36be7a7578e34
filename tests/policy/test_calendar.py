"""Working-hours calendars (issue 15, item 8): a stage marked ``working_time`` counts only working hours, skipping
nights, weekends and holidays; the default 24x7 calendar keeps wall-clock deadlines."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from policy.calendar import ALWAYS, InvalidCalendarError, add_working_time, parse_calendar
from policy.case_errors import InvalidDeadlineTableError
from policy.casework import Action, Actor, Role, apply_transition, new_case
from policy.deadlines import load_default_deadline_table, parse_deadline_table
from policy.routing import EventClass

CAL = parse_calendar("""
utc_offset = "+08:00"
holidays = ["2026-10-07"]
[hours]
mon = ["08:30-12:00", "13:30-17:30"]
tue = ["08:30-12:00", "13:30-17:30"]
wed = ["08:30-12:00", "13:30-17:30"]
thu = ["08:30-12:00", "13:30-17:30"]
fri = ["08:30-12:00", "13:30-17:30"]
""")
LOCAL = timezone(timedelta(hours=8))


def _at(day: int, hh: int, mm: int = 0) -> datetime:
    """A local instant in the week of Mon 2026-10-05 (Wednesday the 7th is a holiday)."""
    return datetime(2026, 10, day, hh, mm, tzinfo=LOCAL)


@pytest.mark.parametrize(("start", "budget", "end"), [
    (_at(5, 9), timedelta(hours=2), _at(5, 11)),  # inside one span
    (_at(5, 11), timedelta(hours=2), _at(5, 14, 30)),  # the lunch break does not count
    (_at(5, 7), timedelta(minutes=30), _at(5, 9)),  # before opening: the clock starts at 08:30
    (_at(5, 17), timedelta(hours=1), _at(6, 9)),  # overnight
    (_at(6, 16), timedelta(hours=4), _at(8, 11)),  # Wednesday the 7th is a holiday: Tue 1.5 h + Thu 2.5 h
    (_at(9, 17), timedelta(hours=1), _at(12, 9)),  # Friday evening to Monday morning
    (_at(10, 10), timedelta(hours=1), _at(12, 9, 30)),  # a Saturday start waits for Monday
    (_at(5, 8, 30), timedelta(hours=7, minutes=30), _at(5, 17, 30)),  # exactly a day: ends at closing time
])  # fmt: skip
def test_working_time_skips_nights_weekends_and_holidays(start: datetime, budget: timedelta, end: datetime) -> None:
    got = add_working_time(CAL, start, budget)
    assert got == end
    assert got.tzinfo == start.tzinfo


def test_a_utc_start_is_read_in_the_calendars_offset_and_answered_in_utc() -> None:
    start = datetime(2026, 10, 5, 1, 0, tzinfo=UTC)  # 09:00 local
    assert add_working_time(CAL, start, timedelta(hours=1)) == datetime(2026, 10, 5, 2, 0, tzinfo=UTC)


def test_the_default_calendar_is_wall_clock_time() -> None:
    start = _at(10, 23)  # a Saturday night
    assert add_working_time(ALWAYS, start, timedelta(hours=5)) == start + timedelta(hours=5)


@pytest.mark.parametrize(("text", "fault"), [
    ('[hours]\nmon = ["09:00-08:00"]\n', "must start before it ends"),
    ('[hours]\nmon = ["08:00-12:00", "11:00-13:00"]\n', "spans overlap"),
    ('[hours]\nmon = ["8-12"]\n', "is not HH:MM-HH:MM"),
    ('[hours]\nmon = []\n', "no working time in the week"),
    ('[hours]\nmonday = ["08:00-12:00"]\n', "hours must be a table of"),
    ('utc_offset = "CET"\n[hours]\nmon = ["08:00-12:00"]\n', "utc_offset must be"),
    ('holidays = ["2026-13-01"]\n[hours]\nmon = ["08:00-12:00"]\n', "is not a YYYY-MM-DD date"),
    ('weekend = 1\n', "unknown keys"),
])  # fmt: skip
def test_a_bad_calendar_is_refused_naming_the_fault(text: str, fault: str) -> None:
    with pytest.raises(InvalidCalendarError, match=re.escape(fault)):
        parse_calendar(text)


_TABLE = """
version = "t.1"
[defaults]
dispatched_h = 1
reported_urgent_min = 10
reported_normal_min = 30
accepted_min = 30
filed_urgent_min = 10
filed_normal_min = 30
checking_h = 1
fed_back_h = 1
hung_d = 1
[working_time]
other = ["in_progress", "dispatched"]
""" + "".join(f"[classes.{c.value}]\nin_progress_h = 8\nextension_h = 4\n" for c in EventClass)


def _handled(table_text: str, *, calendar: object = None) -> tuple[datetime | None, datetime | None]:
    """Deadlines of an ``other`` and a ``status_red`` case dispatched and started on Friday 16:00 local."""
    from dataclasses import replace

    table = parse_deadline_table(table_text)
    if calendar is not None:
        table = replace(table, calendar=calendar)
    now = _at(9, 16).astimezone(UTC)
    out: list[datetime | None] = []
    for cls in (EventClass.OTHER, EventClass.STATUS_RED):
        case = new_case(case_id="c" + "1" * 20, event_class=cls, place_id="p", jurisdiction=("city",),
                        department="ops", actor=Actor("s", Role.SOURCE), now=now, deadlines=table)  # fmt: skip
        for action in (Action.ACCEPT, Action.FILE, Action.DISPATCH):
            case = apply_transition(case, action, actor=Actor("sys", Role.SYSTEM), now=now, deadlines=table)
        case = apply_transition(case, Action.START, actor=Actor("h", Role.DEPARTMENT, "ops"), now=now, deadlines=table)
        out.append(case.stage_deadline)
    return out[0], out[1]


def test_a_stage_marked_working_time_counts_working_hours_and_others_keep_wall_clock() -> None:
    other, red = _handled(_TABLE, calendar=CAL)
    # 8 working hours from Friday 16:00: 1.5 h Friday, Monday 08:30-12:00 and 13:30-16:30.
    assert other == _at(12, 16, 30).astimezone(UTC)
    assert red == _at(10, 0).astimezone(UTC)  # status_red is not marked: 8 wall-clock hours


def test_without_a_calendar_a_working_time_stage_keeps_wall_clock_deadlines() -> None:
    other, red = _handled(_TABLE)
    assert other == red == _at(10, 0).astimezone(UTC)


def test_the_shipped_table_marks_no_stage_so_its_deadlines_are_unchanged() -> None:
    assert dict(load_default_deadline_table().working_time) == {}


@pytest.mark.parametrize(("working_time", "fault"), [
    ('[working_time]\nnope = ["in_progress"]\n', "unknown event class"),
    ('[working_time]\nother = ["lunch"]\n', "a list of accepted"),
    ("working_time = 3\n", "working_time must be a table"),
])  # fmt: skip
def test_a_bad_working_time_section_is_refused(working_time: str, fault: str) -> None:
    text = _TABLE.replace('[working_time]\nother = ["in_progress", "dispatched"]\n', "")
    text = text.replace('version = "t.1"\n', 'version = "t.1"\n' + working_time)
    with pytest.raises(InvalidDeadlineTableError, match=re.escape(fault)):
        parse_deadline_table(text)


def test_a_working_time_stage_is_overdue_at_its_working_deadline_and_escalates_at_twice_its_wall_span() -> None:
    from dataclasses import replace

    from policy.deadlines import next_due_at, sweep

    table = replace(parse_deadline_table(_TABLE), calendar=CAL)
    start = _at(9, 16).astimezone(UTC)  # Friday 16:00 local
    case = new_case(case_id="c" + "2" * 20, event_class=EventClass.OTHER, place_id="p",
                    jurisdiction=("city", "d1", "s1", "g1", "c1"), department="ops",
                    actor=Actor("s", Role.SOURCE), now=start, deadlines=table)  # fmt: skip
    for action in (Action.ACCEPT, Action.FILE, Action.DISPATCH):
        case = apply_transition(case, action, actor=Actor("sys", Role.SYSTEM), now=start, deadlines=table)
    case = apply_transition(case, Action.START, actor=Actor("h", Role.DEPARTMENT, "ops"), now=start, deadlines=table)
    deadline = _at(12, 16, 30).astimezone(UTC)
    assert case.stage_deadline == deadline and next_due_at(case) == deadline
    assert sweep(case, now=deadline - timedelta(microseconds=1)) is case  # the weekend does not count
    flagged = sweep(case, now=deadline)
    assert flagged.overdue and flagged.escalation_count == 0
    # Escalation counts multiples of the stage's span on the wall clock, not of its working time.
    assert next_due_at(flagged) == start + 2 * (deadline - start)
