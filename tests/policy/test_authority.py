"""Who may decide on a case: a principal's centre level from its jurisdiction, and the authority escalation moves
(issue 15 "escalation moves authority")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.authority import centre_level_of, check_may_decide, covers, may_decide
from policy.case_errors import EscalatedAboveYouError
from policy.casework import Actor, Case, Role, new_case
from policy.deadlines import load_default_deadline_table, sweep
from policy.routing import CentreLevel, EventClass

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
TABLE = load_default_deadline_table()


@pytest.mark.parametrize(
    ("jurisdiction", "level"),
    [
        ("city", CentreLevel.CITY),
        ("city/d1", CentreLevel.DISTRICT),
        ("city/d1/s3", CentreLevel.STREET),
        ("city/d1/s3/g2", CentreLevel.STREET),  # a grid is an application unit of its street centre
        ("city/d1/s3/g2/c7", CentreLevel.COMMUNITY),
        ("city/d1/s3/g2/c7/b1", CentreLevel.COMMUNITY),  # a building belongs to its community's centre
    ],
)
def test_a_principals_jurisdiction_names_its_centre(jurisdiction: str, level: CentreLevel) -> None:
    assert centre_level_of(jurisdiction.split("/")) is level


def _case(path: str = "city/d1/s3/g2/c7") -> Case:
    return new_case(
        case_id="c-1", event_class=EventClass.FORCED_ENTRY, place_id="p", jurisdiction=tuple(path.split("/")),
        department="d1-police", actor=Actor("sm", Role.SOURCE), now=T0, deadlines=TABLE,
    )  # fmt: skip


def _scope(text: str) -> list[str]:
    return text.split("/")


def test_before_escalation_the_holding_centre_and_every_centre_above_it_decide() -> None:
    case = _case()  # held by the community centre city/d1/s3/g2/c7
    assert case.level is CentreLevel.COMMUNITY
    for scope in ("city/d1/s3/g2/c7", "city/d1/s3", "city/d1", "city"):
        assert may_decide(_scope(scope), case), scope
    for scope in ("city/d2", "city/d1/s4", "city/d1/s3/g2/c8"):  # other areas do not even see it
        assert not covers(_scope(scope), case) and not may_decide(_scope(scope), case)


def test_escalation_moves_the_decision_up_and_leaves_the_lower_centre_reading() -> None:
    case = sweep(_case(), now=T0 + timedelta(minutes=20))  # 2x the 10 min reported budget: street
    assert case.level is CentreLevel.STREET
    community = _scope("city/d1/s3/g2/c7")
    assert covers(community, case) and not may_decide(community, case)
    with pytest.raises(EscalatedAboveYouError) as info:
        check_may_decide(community, case)
    assert info.value.code == "escalated_above_you"
    assert may_decide(_scope("city/d1/s3"), case) and may_decide(_scope("city/d1/s3/g2"), case)
    case = sweep(case, now=T0 + timedelta(minutes=40))  # 4x: district
    assert case.level is CentreLevel.DISTRICT
    assert not may_decide(_scope("city/d1/s3"), case)
    assert may_decide(_scope("city/d1"), case) and may_decide(_scope("city"), case)
    check_may_decide(_scope("city/d1"), case)  # no error


def test_an_empty_jurisdiction_neither_sees_nor_decides() -> None:
    assert not covers([], _case()) and not may_decide([], _case())
