"""What the registry commands check before they write: a place's venue class against the admission rules and a
principal's scope against the routing table, the tables the gateway itself runs with.

A registry entry the gateway cannot use fails late and far from its cause (a place of class ``Z`` is refused at
every scan, a handler of an unknown department never sees a case), so the command refuses it at once, with one
line naming the problem (``RegistryInputError`` is a ``ValueError``: ``gateway.cli.main`` prints it and exits 2).
"""

from __future__ import annotations

from pathlib import Path

from gateway.principals import Principal, Role
from gateway.settings import Settings
from policy.case_errors import CaseError
from policy.errors import PolicyError
from policy.routing import RoutingTable, load_default_routing_table, parse_jurisdiction, parse_routing_table
from policy.rules import Rules, load_rules

__all__ = ["RegistryInputError", "check_scope", "check_venue_class", "configured_routing", "configured_rules"]


class RegistryInputError(ValueError):
    """A registry command refused before anything is written (one line for the operator, exit status 2)."""


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryInputError(f"{what} {path}: {getattr(exc, 'strerror', None) or exc}") from None


def configured_rules(settings: Settings) -> Rules:
    """The admission rules the gateway runs with: PLACEGATE_RULES_FILE, or the packaged defaults."""
    text = _read(settings.rules_file, "rules file") if settings.rules_file else None
    try:
        return load_rules(text)
    except PolicyError as exc:
        raise RegistryInputError(f"rules file {settings.rules_file}: {exc}") from None


def configured_routing(settings: Settings) -> RoutingTable:
    """The routing table the dispatch core runs with: PLACEGATE_DISPATCH_ROUTING_FILE, or the packaged one."""
    path = settings.dispatch.routing_file
    if path is None:
        return load_default_routing_table()
    try:
        return parse_routing_table(_read(path, "routing file"))
    except CaseError as exc:
        raise RegistryInputError(f"routing file {path}: {exc}") from None


def check_venue_class(venue_class: str, rules: Rules) -> None:
    """:raises RegistryInputError: a class the admission rules do not define (every scan there would fail)."""
    if rules.for_class(venue_class) is None:
        known = ",".join(sorted(rules.classes))
        raise RegistryInputError(f"venue class {venue_class[:8]!r} is not in the rules (version {rules.version}): "
                                 f"use one of {known}")


def check_scope(principal: Principal, routing: RoutingTable) -> None:
    """A principal's department and jurisdiction against the routing table, and the scope its role needs.

    :raises RegistryInputError: a handler without a department the table routes to, a dispatcher or supervisor
        without a jurisdiction, a jurisdiction that is malformed or outside the table's city, a device bound to
        other than one place, a site manager without places.
    """
    role, department, jurisdiction = principal.role, principal.department, principal.jurisdiction
    if role is Role.HANDLER and not department:
        raise RegistryInputError("a handler needs --department (a department of the routing table)")
    if department and department not in routing.departments():
        raise RegistryInputError(f"department {department[:64]!r} is not in the routing table "
                                 f"(version {routing.version}): no case would ever reach it")
    if role in (Role.DISPATCHER, Role.SUPERVISOR) and not jurisdiction:
        raise RegistryInputError(f"a {role.value} needs --jurisdiction (a subtree of {routing.city})")
    if jurisdiction:
        try:
            path = parse_jurisdiction(jurisdiction)
        except CaseError:
            raise RegistryInputError(f"jurisdiction {jurisdiction[:64]!r} is malformed: city/district/street/grid/"
                                     "community/building, segments [a-z0-9][a-z0-9_-]*") from None
        if path[0] != routing.city:
            raise RegistryInputError(f"jurisdiction {jurisdiction[:64]!r} is outside the routing table's city "
                                     f"{routing.city!r}")
    if role is Role.DEVICE and len(principal.places) != 1:
        raise RegistryInputError("a device is bound to exactly one place (--places PLACE)")
    if role is Role.SITE_MANAGER and not principal.places:
        raise RegistryInputError("a site manager needs --places")
