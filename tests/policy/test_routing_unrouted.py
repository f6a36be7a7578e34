"""Honest routing, the pure half (issue 15): which departments serve a place, the city's unrouted queue and the
hand routing of a city dispatcher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.case_errors import (
    CaseUnroutedError,
    DepartmentOutOfJurisdictionError,
    IllegalTransitionError,
    InvalidArgumentError,
    InvalidRoutingTableError,
    NotPermittedRoleError,
)
from policy.casework import Action, Actor, Case, CaseState, Role, apply_transition, new_case
from policy.deadlines import load_default_deadline_table
from policy.routing import UNROUTED, CentreLevel, EventClass, load_default_routing_table, parse_routing_table
from policy.unrouted import is_unrouted, route_by_hand

TABLE = load_default_routing_table()  # city "metro"; east-cdc, east-public-security, west-*, riverside-street-office
DEADLINES = load_default_deadline_table()
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CITY_DISPATCHER = Actor("disp-city", Role.SHIFT_LEAD)


@pytest.mark.parametrize(
    ("department", "path", "serves"),
    [
        ("east-public-security", "metro/east/riverside/g1", True),  # its district, any depth below
        ("east-public-security", "metro/east", True),
        ("west-public-security", "metro/east/riverside", False),  # Huangpu is not Pudong's
        ("riverside-street-office", "metro/east/riverside/g1", True),
        ("riverside-street-office", "metro/east", False),  # a street office does not serve its whole district
        ("riverside-street-office", "metro/east/hill", False),  # nor a sibling street
        ("city-public-security", "metro/west/a/b", True),  # a city default serves the whole city
        ("city-public-security", "metro", True),
        ("east-cdc", "metro", False),  # the city root: city departments only
        ("city-cdc", "elsewhere/d1", False),  # outside the city nobody does
        ("no-such-department", "metro/east", False),
    ],
)
def test_a_department_serves_the_subtree_of_its_rules_and_city_defaults_the_whole_city(
    department: str, path: str, serves: bool
) -> None:
    segments = tuple(path.split("/"))
    assert TABLE.serves(department, segments) is serves
    if serves:
        TABLE.check_serves(department, segments)
    else:
        with pytest.raises(DepartmentOutOfJurisdictionError) as info:
            TABLE.check_serves(department, segments)
        assert info.value.code == "department_out_of_jurisdiction"


def test_no_table_may_route_to_the_reserved_unrouted_department() -> None:
    def table(other_default: str, rule_department: str) -> str:
        defaults = "\n".join(f'{c} = "{other_default if c is EventClass.OTHER else "city-x"}"' for c in EventClass)
        rule = f'[[rules]]\nevent_classes = ["other"]\njurisdiction = "metro/east"\ndepartment = "{rule_department}"'
        return f'version = "t"\ncity = "metro"\n[defaults]\n{defaults}\n{rule}\n'

    assert parse_routing_table(table("city-ops", "east-ops")).departments() == {"city-x", "city-ops", "east-ops"}
    for other_default, rule_department in (("unrouted", "east-ops"), ("city-ops", "unrouted")):
        with pytest.raises(InvalidRoutingTableError):
            parse_routing_table(table(other_default, rule_department))
    assert UNROUTED not in TABLE.departments()


def _unrouted(event_class: EventClass = EventClass.CROWDING) -> Case:
    # What the intake worker makes of an event it cannot route (gateway/dispatch/worker.py open_case).
    return new_case(case_id="c" + "1" * 20, event_class=event_class, place_id="p-far", jurisdiction=("metro",),
                    department=UNROUTED, actor=Actor("sm-1", Role.SOURCE), now=T0,
                    deadlines=load_default_deadline_table())  # fmt: skip


def test_an_unrouted_case_is_held_by_the_city_and_takes_nothing_but_cancel_until_routed() -> None:
    case = _unrouted()
    assert (case.state, case.level, case.department, is_unrouted(case)) == (
        CaseState.REPORTED, CentreLevel.CITY, UNROUTED, True,
    )
    for action, actor in ((Action.ACCEPT, Actor("d", Role.INTAKE_OPERATOR)), (Action.ACCEPT, Actor("w", Role.SYSTEM))):
        with pytest.raises(CaseUnroutedError) as info:
            apply_transition(case, action, actor=actor, now=T0, deadlines=DEADLINES)
        assert info.value.code == "case_unrouted"
    cancelled = apply_transition(case, Action.CANCEL, actor=Actor("d", Role.INTAKE_OPERATOR), now=T0,
                                 deadlines=DEADLINES, note="not a place of ours")  # fmt: skip
    assert cancelled.state is CaseState.CANCELLED


def test_a_city_dispatcher_routes_by_hand_and_the_case_follows_the_normal_flow() -> None:
    case = _unrouted()
    at = T0 + timedelta(minutes=4)
    routed = route_by_hand(case, "city-market-regulation", actor=CITY_DISPATCHER, scope=("metro",), now=at,
                           routing=TABLE)  # fmt: skip
    assert (routed.department, routed.state, routed.level, routed.stage_started_at) == (
        "city-market-regulation", CaseState.REPORTED, CentreLevel.CITY, T0,  # the wait counts against `reported`
    )
    last = routed.history[-1]
    assert (last.action, last.actor_id, last.at, last.department) == (Action.ROUTE, "disp-city", at,
                                                                      "city-market-regulation")
    assert case.department == UNROUTED  # the input is never modified
    for action in (Action.ACCEPT, Action.FILE, Action.DISPATCH):
        routed = apply_transition(routed, action, actor=Actor("disp-city", Role.INTAKE_OPERATOR if action is not
                                  Action.DISPATCH else Role.SHIFT_LEAD), now=at, deadlines=DEADLINES)  # fmt: skip
    assert (routed.state, routed.department) == (CaseState.DISPATCHED, "city-market-regulation")
    with pytest.raises(IllegalTransitionError):  # routed once: no second hand routing
        route_by_hand(routed, "city-cdc", actor=CITY_DISPATCHER, scope=("metro",), now=at, routing=TABLE)


@pytest.mark.parametrize(
    ("department", "actor", "scope", "error"),
    [
        ("city-cdc", Actor("disp-east", Role.SHIFT_LEAD), ("metro", "east"), NotPermittedRoleError),  # a district's
        ("city-cdc", Actor("sup-city", Role.SUPERVISOR), ("metro",), NotPermittedRoleError),
        ("city-cdc", Actor("h", Role.DEPARTMENT, "city-cdc"), ("metro",), NotPermittedRoleError),
        ("east-cdc", CITY_DISPATCHER, ("metro",), DepartmentOutOfJurisdictionError),  # serves the east only
        ("no-such-department", CITY_DISPATCHER, ("metro",), InvalidArgumentError),
        (UNROUTED, CITY_DISPATCHER, ("metro",), InvalidArgumentError),
    ],
)
def test_hand_routing_is_a_city_dispatchers_to_a_city_department(
    department: str, actor: Actor, scope: tuple[str, ...], error: type[Exception]
) -> None:
    case = _unrouted()
    with pytest.raises(error):
        route_by_hand(case, department, actor=actor, scope=scope, now=T0, routing=TABLE)


def test_a_routed_or_closed_case_is_not_routed_by_hand() -> None:
    routed = new_case(case_id="c" + "2" * 20, event_class=EventClass.CROWDING, place_id="p",
                      jurisdiction=("metro", "east"), department="city-market-regulation",
                      actor=Actor("sm-1", Role.SOURCE), now=T0, deadlines=load_default_deadline_table())  # fmt: skip
    with pytest.raises(IllegalTransitionError):
        route_by_hand(routed, "city-cdc", actor=CITY_DISPATCHER, scope=("metro",), now=T0, routing=TABLE)
    cancelled = apply_transition(_unrouted(), Action.CANCEL, actor=Actor("d", Role.INTAKE_OPERATOR), now=T0,
                                 deadlines=DEADLINES, note="duplicate")  # fmt: skip
    with pytest.raises(IllegalTransitionError):
        route_by_hand(cancelled, "city-cdc", actor=CITY_DISPATCHER, scope=("metro",), now=T0, routing=TABLE)
