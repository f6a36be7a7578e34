"""Evaluation metrics on a small seeded history; every expected number is worked out by hand below."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.case_errors import InvalidTimeError
from policy.case_metrics import CaseMetrics, evaluate, evaluate_by_department, evaluate_by_jurisdiction
from policy.casework import Action, Actor, Case, ClosureKind, Role, apply_transition, new_case
from policy.deadlines import load_default_deadline_table
from policy.routing import EventClass, JurisdictionLevel

TABLE = load_default_deadline_table()
T0 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)
END = T0 + timedelta(days=1)
OP, LEAD, SUP, SYS = (Actor(n, r) for n, r in [("op", Role.INTAKE_OPERATOR), ("lead", Role.SHIFT_LEAD),
                                                 ("sup", Role.SUPERVISOR), ("sys", Role.SYSTEM)])  # fmt: skip
EAST = Actor("h-east", Role.DEPARTMENT, department="east-cdc")
WEST = Actor("h-west", Role.DEPARTMENT, department="west-cdc")
Step = tuple[int, Action, Actor, dict[str, object]]


def _case(
    case_id: str, event_class: EventClass, path: str, department: str, at: datetime, steps: list[Step]
) -> Case:
    case = new_case(
        case_id=case_id, event_class=event_class, place_id="p", jurisdiction=tuple(path.split("/")),
        department=department, actor=SYS, now=at, deadlines=TABLE)  # fmt: skip
    for minute, action, actor, kwargs in steps:
        now = at + timedelta(minutes=minute)
        case = apply_transition(case, action, actor=actor, now=now, deadlines=TABLE, **kwargs)  # type: ignore[arg-type]
    return case


# Default budgets: reported 10 min urgent / 30 min normal, accepted 30 min, filed 10 min urgent / 30 min normal,
# dispatched 1 h, status_red handling 2 h, checking 1 h. Times are minutes after the case was reported. The
# closure kind is never passed: the rules set it (A normal, B overdue).
# A: everything on time. file 5 <= 1+30; feed back 60 <= 20+120; handling 60 - 10 = 50 min = 3000 s.
A = _case("A", EventClass.STATUS_RED, "metro/east/r1", "east-cdc", T0, [
    (1, Action.ACCEPT, OP, {}), (5, Action.FILE, OP, {}), (10, Action.DISPATCH, LEAD, {}),
    (20, Action.START, EAST, {}), (60, Action.FEED_BACK, EAST, {}), (61, Action.REQUEST_CHECK, SYS, {}),
    (70, Action.CLOSE, SUP, {}),
])  # fmt: skip
# B: filed late (40 > 1+30); dispatched to the wrong department, returned, re-dispatched to east
# (2 dispatches, 1 return); reworked once; second feedback late (300 > 115+120), so neither handled
# nor closed on time; handling 300 - 45 (first dispatch) = 255 min = 15300 s.
B = _case("B", EventClass.STATUS_RED, "metro/east/r2", "west-cdc", T0, [
    (1, Action.ACCEPT, OP, {}), (40, Action.FILE, OP, {}), (45, Action.DISPATCH, LEAD, {}),
    (50, Action.RETURN, WEST, {"note": "east of the river"}),
    (55, Action.DISPATCH, LEAD, {"department": "east-cdc"}),
    (60, Action.START, EAST, {}), (100, Action.FEED_BACK, EAST, {}), (101, Action.REQUEST_CHECK, SYS, {}),
    (110, Action.REWORK, SUP, {"note": "no photo"}), (115, Action.START, EAST, {}),
    (300, Action.FEED_BACK, EAST, {}), (301, Action.REQUEST_CHECK, SYS, {}),
    (320, Action.CLOSE, SUP, {}),
])  # fmt: skip
# C: normal case, filed and dispatched on time (10 <= 2+30; 30 <= 10+30), still being handled.
C = _case("C", EventClass.OTHER, "metro/west/s1", "west-cdc", T0, [
    (2, Action.ACCEPT, OP, {}), (10, Action.FILE, OP, {}), (30, Action.DISPATCH, LEAD, {}),
    (40, Action.START, WEST, {}),
])  # fmt: skip
# D: cancelled duplicate: counted in ``cancelled`` only.
D = _case("D", EventClass.STATUS_YELLOW, "metro/west/s1", "west-cdc", T0, [
    (5, Action.CANCEL, OP, {"note": "duplicate of C"}),
])  # fmt: skip
# E: reported the day before: outside the range.
E = _case("E", EventClass.STATUS_RED, "metro/east/r1", "east-cdc", T0 - timedelta(days=1), [
    (1, Action.ACCEPT, OP, {}), (5, Action.FILE, OP, {}),
])  # fmt: skip
# F: reported at 23:00 and filed at 00:10 the next day: in the population, but the filing is after END.
F = _case("F", EventClass.STATUS_RED, "metro/east/r1", "east-cdc", T0 + timedelta(hours=23), [
    (10, Action.ACCEPT, OP, {}), (70, Action.FILE, OP, {}),
])  # fmt: skip
CASES = [A, B, C, D, E, F]


def test_counters_over_the_whole_range() -> None:
    assert evaluate(CASES, start=T0, end=END) == CaseMetrics(
        cases=4,  # A B C F
        cancelled=1,  # D
        filed=3,  # A B C (F files after END)
        filed_on_time=2,  # A C
        dispatches=4,  # A 1 + B 2 + C 1
        returns=1,  # B
        dispatched=3,  # A B C
        handled=2,  # A B
        handled_on_time=1,  # A
        handling_seconds=3000 + 15300,
        checked=2,  # A B
        reworked=1,  # B
        closed=2,  # A B
        closed_on_time=1,  # A
        closed_normal=1,  # A
        closed_overdue=1,  # B: filed late, fed back late
    )


def test_closure_kinds_are_counted_and_cancellation_is_error() -> None:
    """Issue 15: the kinds follow the rules and are reported; a cancelled (invalid) report is kind ``error``."""
    assert (A.closure_kind, B.closure_kind, D.closure_kind) == (ClosureKind.NORMAL, ClosureKind.OVERDUE,
                                                                ClosureKind.ERROR)  # fmt: skip
    hung = _case("H", EventClass.STATUS_RED, "metro/east/r1", "east-cdc", T0, [
        (1, Action.ACCEPT, OP, {}), (5, Action.FILE, OP, {}), (10, Action.DISPATCH, LEAD, {}),
        (20, Action.START, EAST, {}), (30, Action.HANG, SUP, {"note": "holder left the city"}),
        (40, Action.CLOSE, SUP, {}),
    ])  # fmt: skip
    assert hung.closure_kind is ClosureKind.SPECIAL
    assert evaluate([*CASES, hung], start=T0, end=END).closure_kinds() == {
        "normal": 1, "overdue": 1, "special": 1, "error": 1,
    }  # fmt: skip


def test_a_report_verified_late_was_not_filed_on_time() -> None:
    """Issue 15: the wait in ``reported`` has a clock; 12 min against the 10 min urgent budget is late, however
    fast the filing after it, and the case closes ``overdue``."""
    late = _case("G", EventClass.STATUS_RED, "metro/east/r1", "east-cdc", T0, [
        (12, Action.ACCEPT, OP, {}), (13, Action.FILE, OP, {}), (14, Action.DISPATCH, LEAD, {}),
        (20, Action.START, EAST, {}), (60, Action.FEED_BACK, EAST, {}), (61, Action.REQUEST_CHECK, SYS, {}),
        (70, Action.CLOSE, SUP, {}),
    ])  # fmt: skip
    m = evaluate([late], start=T0, end=END)
    assert (m.filed, m.filed_on_time, m.closed_on_time, m.closed_overdue) == (1, 0, 0, 1)
    assert late.closure_kind is ClosureKind.OVERDUE


def test_a_report_backdated_into_a_closed_window_leaves_its_figures_unchanged() -> None:
    """Issue 15: a case dates from its intake, not from the time its source claims; so a report taken today
    about yesterday is counted today, and yesterday's figures stay what they were."""
    yesterday = (T0 - timedelta(days=1), T0)
    before = evaluate(CASES, start=yesterday[0], end=yesterday[1])
    backdated = new_case(
        case_id="R", event_class=EventClass.FORCED_ENTRY, place_id="p", jurisdiction=("metro", "east", "r1"),
        department="east-cdc", actor=Actor("sm", Role.SOURCE), now=T0 + timedelta(hours=2), deadlines=TABLE,
        occurred_at=T0 - timedelta(hours=20),
    )  # fmt: skip
    assert backdated.created_at == T0 + timedelta(hours=2)
    assert backdated.occurred_at == T0 - timedelta(hours=20)
    assert evaluate([*CASES, backdated], start=yesterday[0], end=yesterday[1]) == before
    assert evaluate([*CASES, backdated], start=T0, end=END).cases == evaluate(CASES, start=T0, end=END).cases + 1


def test_rates_over_the_whole_range() -> None:
    assert evaluate(CASES, start=T0, end=END).rates() == pytest.approx({
        "on_time_filing_rate": 2 / 3,
        "dispatch_accuracy": 1 - 1 / 4,
        "handling_rate": 2 / 3,
        "on_time_handling_rate": 1 / 3,
        "closure_rate": 2 / 3,  # closed / filed
        "on_time_closure_rate": 1 / 3,
        "rework_rate": 1 / 2,
        "mean_handling_time_s": (3000 + 15300) / 2,  # 9150 s
    })  # fmt: skip


def test_per_department_charges_each_stage_to_the_department_that_held_it() -> None:
    """Issue 15: B went to west (45), was returned (50) and re-dispatched to east (55). West's dispatch and its
    return count under west, and east's handling time runs from east's own dispatch (55), not from west's (45).
    The outcomes (cases, filing, check, closure) count once, under the department holding the case at the end."""
    by_department = evaluate_by_department(CASES, start=T0, end=END)
    assert set(by_department) == {"east-cdc", "west-cdc"}
    east = by_department["east-cdc"]  # outcomes of A, B, F; stages of A and of B from 55
    assert (east.cases, east.dispatches, east.returns, east.dispatched, east.handled) == (3, 2, 0, 2, 2)
    assert east.handling_seconds == 3000 + (300 - 55) * 60
    assert east.rates() == pytest.approx({
        "on_time_filing_rate": 1 / 2,  # A of A B
        "dispatch_accuracy": 1.0,  # east returned nothing
        "handling_rate": 2 / 2,
        "on_time_handling_rate": 1 / 2,
        "closure_rate": 2 / 2,
        "on_time_closure_rate": 1 / 2,
        "rework_rate": 1 / 2,
        "mean_handling_time_s": (3000 + 14700) / 2,
    })  # fmt: skip
    west = by_department["west-cdc"]  # outcomes of C and the cancelled D; stages of C and of B until 50
    assert (west.cases, west.cancelled, west.dispatches, west.returns, west.dispatched) == (1, 1, 2, 1, 1)
    assert west.rates() == {
        "on_time_filing_rate": 1.0,
        "dispatch_accuracy": 0.5,  # B's return is west's
        "handling_rate": 0.0,  # C not yet handled; B's return is not held against west's handling
        "on_time_handling_rate": 0.0,
        "closure_rate": 0.0,
        "on_time_closure_rate": 0.0,
        "rework_rate": None,  # nothing checked yet
        "mean_handling_time_s": None,
    }
    # The split moves figures between departments, never creates or loses a dispatch, return or handled case.
    total = evaluate(CASES, start=T0, end=END)
    assert (east + west).dispatches == total.dispatches and (east + west).returns == total.returns
    assert (east + west).handled == total.handled and (east + west).closed == total.closed


def test_per_jurisdiction_at_a_chosen_level() -> None:
    districts = evaluate_by_jurisdiction(CASES, start=T0, end=END, level=JurisdictionLevel.DISTRICT)
    assert set(districts) == {"metro/east", "metro/west"}
    assert districts["metro/east"] == evaluate([A, B, F], start=T0, end=END)
    streets = evaluate_by_jurisdiction(CASES, start=T0, end=END, level=JurisdictionLevel.STREET)
    assert set(streets) == {"metro/east/r1", "metro/east/r2", "metro/west/s1"}
    assert (streets["metro/east/r1"].cases, streets["metro/east/r1"].closed) == (2, 1)  # A F


def test_history_after_the_end_is_ignored() -> None:
    # At 01:05 A has fed back (60) but is not closed (70); B has been re-dispatched but not fed back.
    early = evaluate(CASES, start=T0, end=T0 + timedelta(minutes=65))
    assert (early.cases, early.handled, early.closed, early.dispatches, early.returns) == (3, 1, 0, 4, 1)


def test_empty_range_has_no_rates() -> None:
    empty = evaluate(CASES, start=END + timedelta(days=1), end=END + timedelta(days=2))
    assert empty == CaseMetrics()
    assert set(empty.rates().values()) == {None}


def test_naive_range_is_refused() -> None:
    with pytest.raises(InvalidTimeError):
        evaluate(CASES, start=datetime(2024, 3, 1), end=END)


def test_a_department_is_never_charged_for_the_time_another_held_the_case() -> None:
    """Issue 15 "each stage's time is charged to the department that held it": G went to east (10), back (20), to
    west (25), back (40), to east again (45), fed back by east (100). East held it 10-20 (returned: no handling)
    and 45-100; west 25-40 (returned). East is charged 55 min, not the 90 from its first dispatch, which would
    include west's 15 minutes; the case as a whole took 90 minutes from its first dispatch to the feedback."""
    g = _case("G", EventClass.STATUS_RED, "metro/east/r1", "east-cdc", T0, [
        (1, Action.ACCEPT, OP, {}), (5, Action.FILE, OP, {}), (10, Action.DISPATCH, LEAD, {}),
        (20, Action.RETURN, EAST, {"note": "not ours"}),
        (25, Action.DISPATCH, LEAD, {"department": "west-cdc"}), (40, Action.RETURN, WEST, {"note": "nor ours"}),
        (45, Action.DISPATCH, LEAD, {"department": "east-cdc"}), (50, Action.START, EAST, {}),
        (100, Action.FEED_BACK, EAST, {}),
    ])  # fmt: skip
    by_department = evaluate_by_department([g], start=T0, end=END)
    assert by_department["east-cdc"].handling_seconds == 55 * 60
    assert (by_department["east-cdc"].dispatches, by_department["east-cdc"].returns) == (2, 1)
    assert by_department["west-cdc"].handling_seconds == 0
    assert (by_department["west-cdc"].dispatches, by_department["west-cdc"].returns) == (1, 1)
    assert evaluate([g], start=T0, end=END).handling_seconds == 90 * 60
