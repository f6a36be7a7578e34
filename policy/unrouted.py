"""The city's unrouted queue: cases the routing table could not route, routed by hand (issue 15 "routing is
honest").

An event at a place the table cannot route (a jurisdiction path outside its city, or none that parses) still
becomes a case, never only a dead letter: department ``UNROUTED``, jurisdiction the city root, so the city centre
holds it (``level`` city) and only the city's dispatchers and supervisors see it. It waits in ``reported``;
``apply_transition`` refuses every action on it but ``cancel`` (``case_unrouted``) until a dispatcher whose
jurisdiction is the city root routes it with ``route_by_hand`` to a department serving the city. From there it
follows the normal flow (accept, file, dispatch). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from policy.case_errors import IllegalTransitionError, InvalidArgumentError, NotPermittedRoleError
from policy.casework import TERMINAL_STATES, Action, Actor, Case, HistoryEntry, Role, check_now
from policy.routing import UNROUTED, RoutingTable

__all__ = ["UNROUTED", "is_unrouted", "route_by_hand"]


def is_unrouted(case: Case) -> bool:
    """Whether ``case`` waits in the city's unrouted queue."""
    return case.department == UNROUTED


def route_by_hand(
    case: Case, department: str, *, actor: Actor, scope: Sequence[str], now: datetime, routing: RoutingTable
) -> Case:
    """Route an unrouted case to ``department``: a ``route`` history entry, no change of state or clock (the time
    it waited in the queue counts against its ``reported`` stage like any other wait).

    :param scope: the acting dispatcher's jurisdiction path; only the city root may route by hand.
    :raises IllegalTransitionError: the case is routed already, or closed.
    :raises NotPermittedRoleError: the actor is not a dispatcher (``shift_lead``) of the city root.
    :raises InvalidArgumentError: ``department`` is not one of the routing table's.
    :raises DepartmentOutOfJurisdictionError: it does not serve the case's jurisdiction (the city root: a
        city-level department).
    """
    check_now(now)
    if not is_unrouted(case) or case.state in TERMINAL_STATES:
        raise IllegalTransitionError("only an open unrouted case is routed by hand")
    if actor.role is not Role.SHIFT_LEAD or tuple(scope) != (routing.city,):
        raise NotPermittedRoleError("only a dispatcher of the city root routes a case by hand")
    if department not in routing.departments():
        raise InvalidArgumentError("unknown department")
    routing.check_serves(department, case.jurisdiction)
    entry = HistoryEntry(
        now, Action.ROUTE, actor.actor_id, actor.role, case.state, case.state, department, case.level, None, None
    )
    return replace(case, department=department, history=(*case.history, entry))
