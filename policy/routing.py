"""Routing: event class and a place's jurisdiction path give the responsible department (GB/T 30428 dispatch).

The table is a TOML document validated completely at load (``parse_routing_table``): a city-level default
department for *every* event class (no gaps, so every in-city place routes somewhere) plus rules that bind
a list of event classes under a jurisdiction prefix to a department. The longest matching prefix wins,
because the most local competent department acts fastest (the five application levels of the city
operation platform: city, district, town/street, grid, community and building). Jurisdiction paths and the
escalation ladder of operation centres are defined here too, since both are geometry of the same tree.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from types import MappingProxyType

from policy.case_errors import (
    DepartmentOutOfJurisdictionError,
    InvalidJurisdictionError,
    InvalidRoutingTableError,
    NoRouteError,
    UnknownEventClassError,
)

__all__ = [
    "EPIDEMIC_EVENT_CLASSES",
    "UNROUTED",
    "CentreLevel",
    "EventClass",
    "JurisdictionLevel",
    "Route",
    "RoutingRule",
    "RoutingTable",
    "centre_area",
    "format_jurisdiction",
    "initial_level",
    "is_urgent",
    "load_default_routing_table",
    "parse_event_class",
    "parse_jurisdiction",
    "parse_routing_table",
]


class EventClass(StrEnum):
    # Raised automatically by the scan path (the admission decision's deny reasons).
    STATUS_RED = "status_red"
    STATUS_YELLOW = "status_yellow"
    FORGED_CODE = "forged_code"
    REPLAYED = "replayed"
    CODE_SHARED = "code_shared"
    FEVER = "fever"  # a digital sentry's temperature reading at or above the venue class's threshold (issue 18)
    # Reported by site managers (``POST /v1/reports``).
    REFUSED_VERIFICATION = "refused_verification"
    FORCED_ENTRY = "forced_entry"
    SUSPECTED_FORGERY = "suspected_forgery"
    DEVICE_FAULT = "device_fault"
    CROWDING = "crowding"
    OTHER = "other"


# docs/dispatch.md "Routing", epidemic exceptions are urgent: a person who may carry infection, or who evaded the check,
# is still moving through the city; device faults, crowding and other reports are ordinary cases.
EPIDEMIC_EVENT_CLASSES: frozenset[EventClass] = frozenset(
    {
        EventClass.STATUS_RED,
        EventClass.STATUS_YELLOW,
        EventClass.FORGED_CODE,
        EventClass.CODE_SHARED,
        EventClass.REPLAYED,
        EventClass.FEVER,
        EventClass.SUSPECTED_FORGERY,
        EventClass.REFUSED_VERIFICATION,
        EventClass.FORCED_ENTRY,
    }
)


# The department of a case the table could not route (a place outside its city, or no usable path): such a case
# waits in the city centre's unrouted queue until a city dispatcher routes it by hand (``policy.unrouted``). A
# reserved name: no table may route to it, so no handler serves it.
UNROUTED = "unrouted"


def is_urgent(event_class: EventClass) -> bool:
    """Whether a case of this class is urgent by default (the epidemic exceptions)."""
    return event_class in EPIDEMIC_EVENT_CLASSES


def parse_event_class(value: str) -> EventClass:
    """Read an event class from untrusted text.

    :raises UnknownEventClassError: if ``value`` is not one of ``EventClass``.
    """
    try:
        return EventClass(value)
    except ValueError:
        raise UnknownEventClassError(f"unknown event class {value[:40]!r}") from None


class JurisdictionLevel(StrEnum):
    """The segments of a jurisdiction path, outermost first."""

    CITY = "city"
    DISTRICT = "district"
    STREET = "street"
    GRID = "grid"
    COMMUNITY = "community"
    BUILDING = "building"

    @property
    def depth(self) -> int:
        """Number of path segments down to and including this level (city = 1)."""
        return _LEVEL_ORDER.index(self) + 1


_LEVEL_ORDER: tuple[JurisdictionLevel, ...] = tuple(JurisdictionLevel)
MAX_DEPTH = len(_LEVEL_ORDER)
# Same grammar as the signed place code (crypto/native.py), so any path a place code carries parses here.
_SEGMENT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def parse_jurisdiction(text: str) -> tuple[str, ...]:
    """Split ``"city/district/street/grid/community/building"`` (1 to 6 segments) into a tuple.

    :raises InvalidJurisdictionError: on empty, malformed or too many segments.
    """
    segments = tuple(text.split("/"))
    if len(segments) > MAX_DEPTH or not all(_SEGMENT_RE.fullmatch(s) for s in segments):
        raise InvalidJurisdictionError(f"invalid jurisdiction path {text[:200]!r}")
    return segments


def format_jurisdiction(path: Sequence[str]) -> str:
    """Join a jurisdiction path back into its ``/`` form."""
    return "/".join(path)


class CentreLevel(StrEnum):
    """The operation centre responsible for a case, lowest first (docs/dispatch.md "Routing": the escalation ladder)."""

    COMMUNITY = "community"
    STREET = "street"
    DISTRICT = "district"
    CITY = "city"

    def superior(self) -> CentreLevel | None:
        """The next centre up, ``None`` at the city."""
        order = tuple(CentreLevel)
        i = order.index(self)
        return order[i + 1] if i + 1 < len(order) else None


# Jurisdiction-path depth of each centre: grid areas are application units of the street centre and a
# building belongs to its community's centre, so neither is a separate escalation step.
_CENTRE_DEPTH: Mapping[CentreLevel, int] = {
    CentreLevel.CITY: 1,
    CentreLevel.DISTRICT: 2,
    CentreLevel.STREET: 3,
    CentreLevel.COMMUNITY: 5,
}


def initial_level(jurisdiction: Sequence[str]) -> CentreLevel:
    """The lowest centre whose area contains the place: the first to supervise its cases."""
    for level in CentreLevel:
        if len(jurisdiction) >= _CENTRE_DEPTH[level]:
            return level
    return CentreLevel.CITY


def centre_area(jurisdiction: Sequence[str], level: CentreLevel) -> tuple[str, ...]:
    """Jurisdiction prefix of the ``level`` centre over a place (a dispatcher's scope must cover it)."""
    return tuple(jurisdiction[: _CENTRE_DEPTH[level]])


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """Event classes under a jurisdiction prefix go to one department."""

    event_classes: frozenset[EventClass]
    jurisdiction: tuple[str, ...]
    department: str


@dataclass(frozen=True, slots=True)
class Route:
    """Where a case goes: the department, the prefix that matched (``(city,)`` for the default), urgency."""

    department: str
    matched: tuple[str, ...]
    urgent: bool
    table_version: str


@dataclass(frozen=True, slots=True)
class RoutingTable:
    version: str
    city: str
    defaults: Mapping[EventClass, str]
    rules: tuple[RoutingRule, ...]

    def route(self, event_class: EventClass, jurisdiction: Sequence[str]) -> Route:
        """Pick the department for ``event_class`` at a place with this jurisdiction path.

        :raises NoRouteError: if the path is not inside the table's city.
        """
        path = tuple(jurisdiction)
        if not path or path[0] != self.city:
            raise NoRouteError(f"jurisdiction outside city {self.city!r}")
        best: RoutingRule | None = None
        for rule in self.rules:
            if (
                event_class in rule.event_classes
                and path[: len(rule.jurisdiction)] == rule.jurisdiction
                and (best is None or len(rule.jurisdiction) > len(best.jurisdiction))
            ):
                best = rule
        if best is None:
            return Route(self.defaults[event_class], (self.city,), is_urgent(event_class), self.version)
        return Route(best.department, best.jurisdiction, is_urgent(event_class), self.version)

    def departments(self) -> frozenset[str]:
        """Every department the table can route to (for validating handler tokens' scopes)."""
        return frozenset(self.defaults.values()) | {r.department for r in self.rules}

    def serves(self, department: str, jurisdiction: Sequence[str]) -> bool:
        """Whether ``department`` serves a place with this path: a city default serves the whole city, a rule's
        department the subtree of its prefix. A department of a sibling or a smaller area does not."""
        path = tuple(jurisdiction)
        if not path or path[0] != self.city:
            return False
        if department in self.defaults.values():
            return True
        return any(r.department == department and path[: len(r.jurisdiction)] == r.jurisdiction for r in self.rules)

    def check_serves(self, department: str, jurisdiction: Sequence[str]) -> None:
        """:raises DepartmentOutOfJurisdictionError: ``department`` does not serve the place (issue 15: a
        Huangpu case is never dispatched to Pudong's police)."""
        if not self.serves(department, jurisdiction):
            raise DepartmentOutOfJurisdictionError(f"department does not serve {format_jurisdiction(jurisdiction)!r}")


_TOP_KEYS = {"version", "city", "defaults", "rules"}
_RULE_KEYS = {"event_classes", "jurisdiction", "department"}
_DEPARTMENT_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def _department(value: object, where: str) -> str:
    if not isinstance(value, str) or not _DEPARTMENT_RE.fullmatch(value):
        raise InvalidRoutingTableError(f"{where}: department must match {_DEPARTMENT_RE.pattern}")
    if value == UNROUTED:
        raise InvalidRoutingTableError(f"{where}: {UNROUTED!r} is reserved for the unrouted queue")
    return value


def _event_class(value: object, where: str) -> EventClass:
    try:
        return EventClass(str(value))
    except ValueError:
        raise InvalidRoutingTableError(f"{where}: unknown event class {str(value)[:40]!r}") from None


def _rule(raw: object, index: int, city: str) -> RoutingRule:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRoutingTableError(f"{where} must be a table")
    if unknown := set(raw) - _RULE_KEYS:
        raise InvalidRoutingTableError(f"{where}: unknown keys {sorted(unknown)}")
    if missing := _RULE_KEYS - set(raw):
        raise InvalidRoutingTableError(f"{where}: missing keys {sorted(missing)}")
    classes_raw = raw["event_classes"]
    if not isinstance(classes_raw, list) or not classes_raw:
        raise InvalidRoutingTableError(f"{where}: event_classes must be a non-empty list")
    classes = [_event_class(c, where) for c in classes_raw]
    if len(set(classes)) != len(classes):
        raise InvalidRoutingTableError(f"{where}: event class listed twice")
    path_raw = raw["jurisdiction"]
    try:
        path = parse_jurisdiction(path_raw if isinstance(path_raw, str) else "")
    except InvalidJurisdictionError:
        raise InvalidRoutingTableError(f"{where}: invalid jurisdiction") from None
    # A rule at the city root would silently shadow the defaults; a rule outside the city could never match.
    if path[0] != city or len(path) < 2:
        raise InvalidRoutingTableError(f"{where}: jurisdiction must lie strictly inside city {city!r}")
    return RoutingRule(frozenset(classes), path, _department(raw["department"], where))


def parse_routing_table(text: str) -> RoutingTable:
    """Parse and validate a routing table TOML document.

    :raises InvalidRoutingTableError: on TOML syntax errors, unknown or missing keys, an event class without a
        default department, unknown event classes, malformed paths or departments, or two rules for the same
        (event class, jurisdiction prefix).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRoutingTableError(f"not valid TOML: {exc}") from exc
    if unknown := set(data) - _TOP_KEYS:
        raise InvalidRoutingTableError(f"unknown keys {sorted(unknown)}")
    version, city = data.get("version"), data.get("city")
    if not isinstance(version, str) or not version:
        raise InvalidRoutingTableError("version must be a non-empty string")
    if not isinstance(city, str) or not _SEGMENT_RE.fullmatch(city):
        raise InvalidRoutingTableError("city must be one jurisdiction segment")
    defaults_raw = data.get("defaults")
    if not isinstance(defaults_raw, dict):
        raise InvalidRoutingTableError("defaults must be a table")
    defaults = {_event_class(k, "defaults"): _department(v, f"defaults.{k}") for k, v in defaults_raw.items()}
    if gaps := set(EventClass) - set(defaults):
        raise InvalidRoutingTableError(f"defaults missing for {sorted(gaps)}")
    rules_raw = data.get("rules", [])
    if not isinstance(rules_raw, list):
        raise InvalidRoutingTableError("rules must be an array of tables")
    rules = tuple(_rule(raw, i, city) for i, raw in enumerate(rules_raw))
    seen: set[tuple[EventClass, tuple[str, ...]]] = set()
    for i, rule in enumerate(rules):
        for event_class in rule.event_classes:
            if (event_class, rule.jurisdiction) in seen:
                raise InvalidRoutingTableError(f"rules[{i}]: duplicate rule for {event_class} at that prefix")
            seen.add((event_class, rule.jurisdiction))
    return RoutingTable(version, city, MappingProxyType(defaults), rules)


def load_default_routing_table() -> RoutingTable:
    """The routing table shipped with the package (``policy/default_routing.toml``)."""
    text = resources.files("policy").joinpath("default_routing.toml").read_text(encoding="utf-8")
    return parse_routing_table(text)
