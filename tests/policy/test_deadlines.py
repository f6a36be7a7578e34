"""Deadlines: overdue at 100 % of a stage budget, escalation one centre up at every 2x, table validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.case_errors import AlreadyTopLevelError, InvalidDeadlineTableError, InvalidTimeError
from policy.casework import TERMINAL_STATES, Action, Actor, Case, CaseState, Role, apply_transition, new_case, ran_late
from policy.deadlines import (
    Assessment,
    apply_assessment,
    assess,
    escalate,
    load_default_deadline_table,
    parse_deadline_table,
    sweep,
)
from policy.routing import CentreLevel, EventClass

TABLE = load_default_deadline_table()
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
S = T0 + timedelta(minutes=10)  # handling starts; status_red allows 2 h
LEAD = Actor("lead-1", Role.SHIFT_LEAD)
HANDLER = Actor("h-1", Role.DEPARTMENT, department="east-cdc")
SYSTEM = Actor("worker", Role.SYSTEM)
_C, _S, _D, _Y = CentreLevel.COMMUNITY, CentreLevel.STREET, CentreLevel.DISTRICT, CentreLevel.CITY


def _in_progress(path: tuple[str, ...] = ("metro", "east", "riverside", "g1", "c2")) -> Case:
    case = new_case(
        case_id="c-9", event_class=EventClass.STATUS_RED, place_id="p-1", jurisdiction=path,
        department="east-cdc", actor=SYSTEM, now=T0, deadlines=TABLE)  # fmt: skip
    for minute, action, actor in [
        (1, Action.ACCEPT, SYSTEM),
        (2, Action.FILE, SYSTEM),
        (3, Action.DISPATCH, LEAD),
    ]:
        case = apply_transition(
            case, action, actor=actor, now=T0 + timedelta(minutes=minute), deadlines=TABLE
        )
    return apply_transition(case, Action.START, actor=HANDLER, now=S, deadlines=TABLE)


def test_case_starts_at_the_community_centre_with_a_two_hour_budget() -> None:
    case = _in_progress()
    assert (case.level, case.stage_started_at, case.stage_deadline) == (_C, S, S + timedelta(hours=2))


@pytest.mark.parametrize(
    ("elapsed", "overdue", "escalate_to", "next_check"),
    [
        (timedelta(0), False, (), timedelta(hours=2)),
        (timedelta(hours=1, minutes=59), False, (), timedelta(hours=2)),
        (timedelta(hours=2), True, (), timedelta(hours=4)),  # 100 %: overdue only
        (timedelta(hours=3, minutes=59), True, (), timedelta(hours=4)),
        (timedelta(hours=4), True, (_S,), timedelta(hours=8)),  # 2x: street
        (timedelta(hours=8), True, (_S, _D), timedelta(hours=12)),  # 4x: district
        (timedelta(hours=12), True, (_S, _D, _Y), None),  # 6x: city, the top
        (timedelta(days=30), True, (_S, _D, _Y), None),
    ],
)
def test_assessment_of_a_fresh_case(
    elapsed: timedelta, overdue: bool, escalate_to: tuple[CentreLevel, ...], next_check: timedelta | None
) -> None:
    result = assess(_in_progress(), now=S + elapsed)
    assert result == Assessment(
        overdue=overdue,
        flag_overdue=overdue,
        escalate_to=escalate_to,
        next_check_at=None if next_check is None else S + next_check,
    )


def test_sweeps_flag_then_escalate_step_by_step_keeping_the_case_id() -> None:
    case = _in_progress()
    assert sweep(case, now=S + timedelta(hours=1)) is case
    case = sweep(case, now=S + timedelta(hours=2))
    assert case.overdue and case.level is _C and case.history[-1].action is Action.FLAG_OVERDUE
    assert sweep(case, now=S + timedelta(hours=2)) is case  # idempotent at one instant
    case = sweep(case, now=S + timedelta(hours=4))
    entry = case.history[-1]
    assert (case.case_id, case.level, case.escalation_count, case.state) == (
        "c-9",
        _S,
        1,
        CaseState.IN_PROGRESS,
    )
    assert (entry.action, entry.role, entry.level, entry.from_state, entry.to_state) == (
        Action.ESCALATE, Role.SYSTEM, _S, CaseState.IN_PROGRESS, CaseState.IN_PROGRESS,
    )  # fmt: skip
    assert sweep(case, now=S + timedelta(hours=7, minutes=59)) is case
    case = sweep(case, now=S + timedelta(hours=8))
    assert (case.level, case.escalation_count) == (_D, 2)
    case = sweep(case, now=S + timedelta(hours=12))
    assert (case.level, case.escalation_count) == (_Y, 3)
    assert sweep(case, now=S + timedelta(days=9)) is case
    assert assess(case, now=S + timedelta(days=9)).next_check_at is None


def test_a_late_sweep_catches_up_all_due_steps() -> None:
    case = sweep(_in_progress(), now=S + timedelta(hours=9))
    assert [e.action for e in case.history[-3:]] == [Action.FLAG_OVERDUE, Action.ESCALATE, Action.ESCALATE]
    assert [e.level for e in case.history[-2:]] == [_S, _D]


def test_a_district_place_escalates_from_the_district() -> None:
    case = _in_progress(("metro", "east"))
    assert case.level is _D
    assert assess(case, now=S + timedelta(hours=40)).escalate_to == (_Y,)


def test_next_stage_keeps_the_level_and_restarts_the_clock() -> None:
    case = sweep(_in_progress(), now=S + timedelta(hours=4))
    fed = apply_transition(case, Action.FEED_BACK, actor=HANDLER, now=S + timedelta(hours=5), deadlines=TABLE)
    checking = apply_transition(
        fed, Action.REQUEST_CHECK, actor=SYSTEM, now=S + timedelta(hours=5), deadlines=TABLE
    )
    assert (checking.level, checking.overdue) == (_S, False)
    assert checking.history[-2].deadline == S + timedelta(hours=2)  # the late feedback is on record
    # Checking allows 1 h; at 2 h the street centre hands it to the district.
    assert assess(checking, now=S + timedelta(hours=7)).escalate_to == (_D,)


def test_an_extension_moves_the_clock() -> None:
    case = apply_transition(
        _in_progress(), Action.POSTPONE, actor=LEAD, now=S + timedelta(hours=1), deadlines=TABLE
    )
    # Deadline 2 h + 2 h extension from S; the budget of the postponed stage is 3 h from the grant.
    assert case.stage_deadline == S + timedelta(hours=4)
    assert not assess(case, now=S + timedelta(hours=3, minutes=59)).overdue
    assert assess(case, now=S + timedelta(hours=7)).escalate_to == (_S,)  # grant + 2 x 3 h


def test_a_closed_case_is_never_overdue() -> None:
    case = apply_transition(_in_progress(), Action.HANG, actor=LEAD, now=S, deadlines=TABLE, note="unsolvable")
    case = apply_transition(case, Action.CLOSE, actor=Actor("sup", Role.SUPERVISOR), now=S, deadlines=TABLE)
    assert case.state is CaseState.CLOSED
    assert assess(case, now=S + timedelta(days=365)) == Assessment(False, False, (), None)


@pytest.mark.parametrize("event_class", list(EventClass))
@pytest.mark.parametrize("urgent", [True, False])
def test_every_stage_but_the_terminal_ones_has_a_clock(event_class: EventClass, urgent: bool) -> None:
    """Issue 15 "every stage has a clock": reported, accepted, ..., fed_back and hung included."""
    for state in CaseState:
        budget = TABLE.budget(event_class, state, urgent=urgent)
        if state in TERMINAL_STATES or state is CaseState.POSTPONED:  # postponed: the old deadline + extension
            assert budget is None
        else:
            assert budget is not None and budget > timedelta(0), state


def _reported(table: object = TABLE) -> Case:
    return new_case(
        case_id="c-r", event_class=EventClass.FORCED_ENTRY, place_id="p-1",
        jurisdiction=("metro", "east", "riverside", "g1", "c2"), department="east-police",
        actor=Actor("sm", Role.SOURCE), now=T0, deadlines=table)  # type: ignore[arg-type]  # fmt: skip


def test_a_report_waiting_for_verification_is_flagged_and_escalated_at_2x_and_4x() -> None:
    """Issue 15: a case in ``reported`` used to have no clock (a sweep 8 h ahead did nothing)."""
    case = _reported()  # forced_entry: urgent, 10 min to verify
    assert case.stage_deadline == T0 + timedelta(minutes=10)
    assert sweep(case, now=T0 + timedelta(minutes=9)) is case
    case = sweep(case, now=T0 + timedelta(minutes=10))
    assert (case.overdue, case.level) == (True, _C)
    case = sweep(case, now=T0 + timedelta(minutes=20))  # 2x: the street centre takes it
    assert (case.level, case.escalation_count, case.state) == (_S, 1, CaseState.REPORTED)
    case = sweep(case, now=T0 + timedelta(minutes=40))  # 4x: the district centre
    assert (case.level, case.escalation_count) == (_D, 2)


def test_a_report_accepted_after_10_minutes_against_a_2_minute_budget_ran_late() -> None:
    table = parse_deadline_table(VALID.replace("reported_urgent_min = 10", "reported_urgent_min = 2"))
    case = _reported(table)
    assert case.stage_deadline == T0 + timedelta(minutes=2)
    accepted = apply_transition(case, Action.ACCEPT, actor=Actor("op", Role.INTAKE_OPERATOR),
                                now=T0 + timedelta(minutes=10), deadlines=table)  # fmt: skip
    assert accepted.history[-1].deadline == T0 + timedelta(minutes=2)
    assert ran_late(accepted.history)


def test_escalation_stops_at_the_city() -> None:
    case = _in_progress(("metro",))
    assert case.level is _Y
    with pytest.raises(AlreadyTopLevelError) as info:
        escalate(case, now=S)
    assert info.value.code == "already_top_level"


def test_naive_now_is_refused() -> None:
    with pytest.raises(InvalidTimeError):
        assess(_in_progress(), now=datetime(2024, 3, 1, 12))
    with pytest.raises(InvalidTimeError):
        apply_assessment(_in_progress(), Assessment(True, True, (), None), now=datetime(2024, 3, 1, 12))


@pytest.mark.parametrize(
    ("event_class", "urgent", "state", "budget"),
    [
        (EventClass.STATUS_RED, True, CaseState.ACCEPTED, timedelta(minutes=30)),
        (EventClass.STATUS_RED, True, CaseState.FILED, timedelta(minutes=10)),
        (EventClass.OTHER, False, CaseState.FILED, timedelta(minutes=30)),
        (EventClass.OTHER, False, CaseState.RETURNED, timedelta(minutes=30)),  # re-dispatch: filing clock
        (EventClass.CROWDING, False, CaseState.FILED, timedelta(minutes=15)),  # per-class override
        (EventClass.CROWDING, True, CaseState.FILED, timedelta(minutes=15)),
        (EventClass.STATUS_RED, True, CaseState.DISPATCHED, timedelta(hours=1)),
        (EventClass.DEVICE_FAULT, False, CaseState.IN_PROGRESS, timedelta(days=1)),
        (EventClass.OTHER, False, CaseState.IN_PROGRESS, timedelta(days=3)),
        (EventClass.STATUS_RED, True, CaseState.CHECKING, timedelta(hours=1)),
        (EventClass.STATUS_RED, True, CaseState.FED_BACK, timedelta(hours=1)),
        (EventClass.STATUS_RED, True, CaseState.REPORTED, timedelta(minutes=10)),
        (EventClass.OTHER, False, CaseState.REPORTED, timedelta(minutes=30)),
        (EventClass.STATUS_RED, True, CaseState.HUNG, timedelta(days=1)),
        (EventClass.STATUS_RED, True, CaseState.CLOSED, None),
    ],
)
def test_default_budgets(
    event_class: EventClass, urgent: bool, state: CaseState, budget: timedelta | None
) -> None:
    assert TABLE.budget(event_class, state, urgent=urgent) == budget


_CLASSES = "\n".join(f"[classes.{c}]\nin_progress_h = 4\nextension_h = 4" for c in EventClass)
_DEFAULTS = ("reported_urgent_min = 10\nreported_normal_min = 30\naccepted_min = 30\nfiled_urgent_min = 10\n"
             "filed_normal_min = 30\ndispatched_h = 1\nfed_back_h = 1\nchecking_h = 1\nhung_d = 1\n")
VALID = f'version = "t"\n[defaults]\n{_DEFAULTS}{_CLASSES}\n'
_BROKEN = {
    "no version": VALID.replace('version = "t"', ""),
    "unknown top key": "extra = 1\n" + VALID,
    "unknown stage": VALID.replace("accepted_min", "verified_min"),
    "unknown unit": VALID.replace("accepted_min", "accepted_s"),
    "per-class stage in defaults": VALID.replace("accepted_min", "in_progress_min"),
    "unknown class": VALID + "[classes.fire]\nin_progress_h = 1\nextension_h = 1\n",
    "gap": VALID.replace("[classes.other]\nin_progress_h = 4\nextension_h = 4", ""),
    "no extension": VALID.replace(
        "[classes.other]\nin_progress_h = 4\nextension_h = 4", "[classes.other]\nin_progress_h = 4"
    ),
    "stage twice": VALID.replace("accepted_min = 30", "accepted_min = 30\naccepted_h = 1"),
    "zero": VALID.replace("accepted_min = 30", "accepted_min = 0"),
    "bool": VALID.replace("accepted_min = 30", "accepted_min = true"),
    "text": VALID.replace("accepted_min = 30", 'accepted_min = "30"'),
    "over a year": VALID.replace("accepted_min = 30", "accepted_d = 400"),
    "not toml": VALID + "[classes\n",
    "a stage without a clock": VALID.replace("hung_d = 1\n", ""),
    "reported without a clock": VALID.replace("reported_normal_min = 30\n", ""),
}


@pytest.mark.parametrize("text", list(_BROKEN.values()), ids=list(_BROKEN))
def test_invalid_deadline_table_is_refused_at_load(text: str) -> None:
    assert parse_deadline_table(VALID).version == "t"
    with pytest.raises(InvalidDeadlineTableError) as info:
        parse_deadline_table(text)
    assert info.value.code == "invalid_deadline_table"
