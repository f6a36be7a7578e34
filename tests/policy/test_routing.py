"""Routing table: longest jurisdiction prefix wins, city defaults, urgency, validation at load."""

from __future__ import annotations

import pytest

from policy.case_errors import (
    InvalidJurisdictionError,
    InvalidRoutingTableError,
    NoRouteError,
    UnknownEventClassError,
)
from policy.routing import (
    CentreLevel,
    EventClass,
    JurisdictionLevel,
    centre_area,
    initial_level,
    load_default_routing_table,
    parse_event_class,
    parse_jurisdiction,
    parse_routing_table,
)

TABLE = load_default_routing_table()
_DEFAULTS = "\n".join(f'{c} = "city-{c.replace("_", "-")}"' for c in EventClass)
VALID = f"""
version = "t1"
city = "metro"
[defaults]
{_DEFAULTS}
[[rules]]
event_classes = ["crowding"]
jurisdiction = "metro/east"
department = "east-market"
[[rules]]
event_classes = ["crowding", "other"]
jurisdiction = "metro/east/riverside/g2"
department = "g2-grid-team"
"""


@pytest.mark.parametrize(
    ("event_class", "path", "department", "matched"),
    [
        # The street rule is longer than the district rule, so it wins below the street.
        (EventClass.CROWDING, "metro/east/riverside/g1", "riverside-street-office", "metro/east/riverside"),
        (EventClass.STATUS_RED, "metro/east/riverside/g1/c2/b3", "east-cdc", "metro/east"),
        (EventClass.STATUS_RED, "metro/west", "west-cdc", "metro/west"),
        # No rule for the class or the area: the city-level default.
        (EventClass.CROWDING, "metro/east/hill", "city-market-regulation", "metro"),
        (EventClass.DEVICE_FAULT, "metro/east/riverside", "city-data-bureau", "metro"),
        (EventClass.STATUS_RED, "metro/north/a", "city-cdc", "metro"),
        (EventClass.OTHER, "metro", "city-operation-centre", "metro"),
    ],
)
def test_default_table_routes_by_longest_prefix(
    event_class: EventClass, path: str, department: str, matched: str
) -> None:
    route = TABLE.route(event_class, parse_jurisdiction(path))
    assert (route.department, "/".join(route.matched)) == (department, matched)
    assert route.table_version == TABLE.version


def test_longest_prefix_wins_regardless_of_rule_order() -> None:
    table = parse_routing_table(VALID)
    assert (
        table.route(EventClass.CROWDING, ("metro", "east", "riverside", "g2", "c1")).department
        == "g2-grid-team"
    )
    assert table.route(EventClass.CROWDING, ("metro", "east", "riverside", "g1")).department == "east-market"
    assert table.route(EventClass.OTHER, ("metro", "east")).department == "city-other"
    assert "g2-grid-team" in table.departments() and "city-status-red" in table.departments()


def test_place_outside_the_city_has_no_route() -> None:
    with pytest.raises(NoRouteError) as info:
        TABLE.route(EventClass.STATUS_RED, ("elsewhere", "east"))
    assert info.value.code == "no_route"


_URGENT = {"status_red", "status_yellow", "forged_code", "code_shared", "replayed", "suspected_forgery",
           "refused_verification", "forced_entry", "fever"}  # fmt: skip


@pytest.mark.parametrize("event_class", list(EventClass))
def test_epidemic_exceptions_are_urgent(event_class: EventClass) -> None:
    route = TABLE.route(event_class, ("metro", "east"))
    assert route.urgent is (event_class.value in _URGENT)


_BROKEN = {
    "gap": VALID.replace('other = "city-other"\n', ""),
    "unknown class in defaults": VALID.replace("[defaults]\n", '[defaults]\nfire = "x"\n'),
    "unknown class in rule": VALID.replace('["crowding"]', '["crowding", "fire"]'),
    "unknown top key": VALID + 'extra = "x"\n',
    "unknown rule key": VALID + "priority = 3\n",
    "missing rule key": VALID.replace('department = "east-market"\n', ""),
    "duplicate rule": VALID
    + '[[rules]]\nevent_classes = ["crowding"]\njurisdiction = "metro/east"\ndepartment = "b"\n',
    "class twice in a rule": VALID.replace('["crowding"]', '["crowding", "crowding"]'),
    "empty class list": VALID.replace('["crowding"]', "[]"),
    "rule at the city root": VALID.replace('"metro/east"', '"metro"'),
    "rule outside the city": VALID.replace('"metro/east"', '"other/east"'),
    "malformed path": VALID.replace('"metro/east"', '"metro//east"'),
    "too deep path": VALID.replace('"metro/east"', '"metro/a/b/c/d/e/f"'),
    "bad department": VALID.replace('"east-market"', '"East Market"'),
    "no version": VALID.replace('version = "t1"', ""),
    "bad city": VALID.replace('city = "metro"', 'city = "metro/x"'),
    "not toml": VALID + "[[rules\n",
    "rules not a list": VALID.replace("[[rules]]", "[rulez]", 1),
}


@pytest.mark.parametrize("text", list(_BROKEN.values()), ids=list(_BROKEN))
def test_invalid_routing_table_is_refused_at_load(text: str) -> None:
    with pytest.raises(InvalidRoutingTableError) as info:
        parse_routing_table(text)
    assert info.value.code == "invalid_routing_table"


@pytest.mark.parametrize("text", ["", "metro//east", "Metro", "metro/a/b/c/d/e/f", "metro/", "a b"])
def test_malformed_jurisdiction_is_refused(text: str) -> None:
    with pytest.raises(InvalidJurisdictionError):
        parse_jurisdiction(text)


def test_unknown_event_class_is_refused() -> None:
    assert parse_event_class("crowding") is EventClass.CROWDING
    with pytest.raises(UnknownEventClassError) as info:
        parse_event_class("fire")
    assert info.value.code == "unknown_event_class"


@pytest.mark.parametrize(
    ("path", "level", "area"),
    [
        ("metro", CentreLevel.CITY, "metro"),
        ("metro/east", CentreLevel.DISTRICT, "metro/east"),
        ("metro/east/riverside/g1", CentreLevel.STREET, "metro/east/riverside"),
        ("metro/east/riverside/g1/c2/b3", CentreLevel.COMMUNITY, "metro/east/riverside/g1/c2"),
    ],
)
def test_first_centre_is_the_lowest_over_the_place(path: str, level: CentreLevel, area: str) -> None:
    segments = parse_jurisdiction(path)
    assert initial_level(segments) is level
    assert "/".join(centre_area(segments, level)) == area


def test_jurisdiction_levels_count_segments() -> None:
    assert [lv.depth for lv in JurisdictionLevel] == [1, 2, 3, 4, 5, 6]
    assert CentreLevel.COMMUNITY.superior() is CentreLevel.STREET and CentreLevel.CITY.superior() is None
