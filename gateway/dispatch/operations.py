"""What a dispatcher, handler, supervisor or site manager may do with cases, once the request is parsed: shared by
the JSON routes (``routes.py``, ``reports.py``) and the web console (``gateway/console/``), so both apply the same
scope (``runtime.in_scope``), the same authority (``policy.authority``), the same transitions
(``policy.casework``) and the same audit entries. Nothing here knows about HTTP bodies or HTML.

Scope (PRIVACY.md "Access"): a case outside the caller's scope gets exactly the answer of a missing one (404
``not_found``). A dispatcher acts as the ``intake_operator`` for accept, cancel and file, and as the
``shift_lead`` for everything else; a handler as ``department``; a supervisor as ``supervisor``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crypto.sealing import SealError, case_binding, reading_binding
from gateway.dispatch import people
from gateway.dispatch.evaluation import evaluation_document
from gateway.dispatch.runtime import DispatchRuntime, in_scope
from gateway.dispatch.store import case_id_for_event, valid_case_id
from gateway.errors import CaseRefusedError, ForbiddenError, GatewayError, NotFoundError
from gateway.intake import REPORT_EVENT_CLASSES, report_event_fields
from gateway.principals import Principal, Role
from gateway.privacy.audit import record_access
from gateway.trust.state import PlaceCache
from policy.authority import check_may_decide, may_decide
from policy.case_errors import CaseError, IllegalTransitionError
from policy.casework import (
    NOTE_MAX_CHARS,
    TERMINAL_STATES,
    TRANSITIONS,
    Action,
    Actor,
    Case,
    CaseState,
    apply_transition,
)
from policy.casework import Role as CaseRole
from policy.masking import mask_personal
from policy.merging import MERGE_ROLES, merge_cases
from policy.purpose import PURPOSE
from policy.routing import UNROUTED, EventClass, JurisdictionLevel
from policy.unrouted import route_by_hand

__all__ = [
    "ACTIONS",
    "CLOCK_SKEW",
    "MASK_HINT",
    "REPORT_MAX_AGE",
    "Acted",
    "Filed",
    "HolderRead",
    "QueueFilter",
    "act",
    "available_actions",
    "evaluate",
    "file_report",
    "queue_page",
    "read_case",
    "read_holder",
]

ACTIONS: dict[str, Action] = {
    a.value: a
    for a in (Action.ACCEPT, Action.CANCEL, Action.FILE, Action.DISPATCH, Action.START, Action.RETURN,
              Action.FEED_BACK, Action.POSTPONE, Action.HANG, Action.REQUEST_CHECK, Action.CLOSE, Action.REWORK)
}  # fmt: skip
_INTAKE_ACTIONS = frozenset({Action.ACCEPT, Action.CANCEL, Action.FILE})
_SCAN_STEPS = 10  # SSCAN steps one queue page may take: bounded work per request
# Issue 15 "time is honest": a report tells of the last day, not of last week, and never of the future. The one
# minute of skew allows for a manager's phone clock running ahead; the case dates from the intake anyway.
CLOCK_SKEW = timedelta(minutes=1)
REPORT_MAX_AGE = timedelta(hours=24)
MASK_HINT = "ID-card numbers, mobile numbers and e-mail addresses in a note are masked before it is stored"


@dataclass(frozen=True, slots=True)
class QueueFilter:
    state: CaseState | None = None
    overdue: bool | None = None
    department: str | None = None


@dataclass(frozen=True, slots=True)
class Acted:
    """A case after an action; ``extension_request`` is set (and the answer is 202) for a requested extension."""

    case: Case
    extension_request: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Filed:
    """A report queued as an intake event: the case id it becomes and the note as stored."""

    event_id: str
    case_id: str
    note: str | None
    masked: dict[str, int] | None


def case_actor(principal: Principal, action: Action) -> Actor:
    if principal.role is Role.HANDLER:
        return Actor(principal.principal_id, CaseRole.DEPARTMENT, principal.department)
    if principal.role is Role.SUPERVISOR:
        return Actor(principal.principal_id, CaseRole.SUPERVISOR)
    role = CaseRole.INTAKE_OPERATOR if action in _INTAKE_ACTIONS else CaseRole.SHIFT_LEAD
    return Actor(principal.principal_id, role)


async def audit_read(
    runtime: DispatchRuntime, principal: Principal, action: str, obj: str, case_ref: str, count: int
) -> None:
    await record_access(runtime.store.redis, principal=principal, action=action, obj=obj, purpose=PURPOSE,
                        now=runtime.now(), case_ref=case_ref, result_count=count)  # fmt: skip


async def visible_case(runtime: DispatchRuntime, principal: Principal, case_id: str) -> Case:
    case = await runtime.store.get(case_id)
    if case is None or not in_scope(principal, case):
        raise NotFoundError("no such case")
    return case


async def queue_page(
    runtime: DispatchRuntime, principal: Principal, filters: QueueFilter, *, limit: int, cursor: int
) -> tuple[list[Case], int]:
    """One page of the caller's open cases (oldest first) and the next cursor (0: done); audited as one read."""
    found: list[Case] = []
    for _ in range(_SCAN_STEPS):
        cursor, ids = await runtime.store.scan_open(cursor, max(limit, 50))
        for case in await runtime.store.get_many(ids):
            if (
                in_scope(principal, case)
                and (filters.state is None or case.state is filters.state)
                and (filters.overdue is None or case.overdue is filters.overdue)
                and (filters.department is None or case.department == filters.department)
            ):
                found.append(case)
        if cursor == 0 or len(found) >= limit:
            break
    found.sort(key=lambda c: (c.created_at, c.case_id))
    # The queue carries no note text: one audit entry per page is the record of who listed which cases.
    await audit_read(runtime, principal, "case_list", "cases", "", len(found))
    return found, cursor


async def read_case(runtime: DispatchRuntime, principal: Principal, case_id: str) -> tuple[Case, dict[str, str] | None]:
    """A case in the caller's scope and its pending extension request; audited before it leaves the gateway."""
    case = await visible_case(runtime, principal, case_id)
    case_id = case.case_id  # a folded report's announced id leads to the case: audit and read under the case's own
    extension = await runtime.store.extension_request(case_id)
    await audit_read(runtime, principal, "case_read", f"case:{case_id}", case_id, 1)
    return case, extension


def available_actions(principal: Principal, case: Case) -> list[str]:
    """The action names this principal may try on ``case`` now, from the transition table and the authority
    rules (the console offers these; ``act`` decides again, so this is a convenience, never the check)."""
    if case.state in TERMINAL_STATES or not in_scope(principal, case):
        return []
    if principal.role in (Role.DISPATCHER, Role.SUPERVISOR) and not may_decide(principal.jurisdiction.split("/"),
                                                                                  case):
        return []
    if case.department == UNROUTED:
        if principal.role is Role.DISPATCHER and case.state is CaseState.REPORTED:
            return ["route", "cancel"]
        return []
    names: list[str] = []
    for name, action in ACTIONS.items():
        transition = TRANSITIONS.get((case.state, action))
        if transition is not None and case_actor(principal, action).role in transition.roles:
            names.append(name)
    if principal.role is Role.SUPERVISOR and case.state is CaseState.CHECKING:
        names = [n for n in names if n not in ("close", "rework")] + ["check"]
    if principal.role is Role.HANDLER and case.state is CaseState.IN_PROGRESS and not case.extension_used:
        names.append("request_extension")
    if case_actor(principal, Action.MERGE).role in MERGE_ROLES:
        names.append("merge")
    return names


async def act(
    runtime: DispatchRuntime, principal: Principal, case_id: str, name: str, *, note: str | None = None,
    department: str | None = None, result: str | None = None, into: str | None = None,
) -> Acted:
    """One workflow step named as the API names it (``check`` with ``result`` pass/fail, ``route``, ``merge``
    with ``into``, ``request_extension`` and the transitions of ``ACTIONS``). :raises GatewayError: the refusal
    and its code."""
    if department is not None and department not in runtime.routing.departments():
        raise CaseRefusedError("unknown department", code="invalid_argument")
    if name == "request_extension":
        return await _request_extension(runtime, principal, case_id, note)
    if name == "route":
        return Acted(await _route_by_hand(runtime, principal, case_id, department))
    if name == "merge":
        return Acted(await _merge(runtime, principal, case_id, into))
    if name == "check":
        if result not in ("pass", "fail"):
            raise CaseRefusedError("check needs result pass or fail", code="invalid_argument")
        action = Action.CLOSE if result == "pass" else Action.REWORK
    elif name in ACTIONS:
        action = ACTIONS[name]
    else:
        raise CaseRefusedError("unknown action", code="unknown_action")
    now = runtime.now()

    def change(case: Case) -> Case:
        if not in_scope(principal, case):
            raise NotFoundError("no such case")
        if principal.role in (Role.DISPATCHER, Role.SUPERVISOR):
            check_may_decide(principal.jurisdiction.split("/"), case)
        new = apply_transition(case, action, actor=case_actor(principal, action), now=now,
                               deadlines=runtime.deadlines, note=note, department=department)  # fmt: skip
        if department is not None:  # a dispatch's (apply_transition refuses it elsewhere): it must serve the place
            runtime.routing.check_serves(department, case.jurisdiction)
        if action is Action.FEED_BACK:
            # The feedback goes to checking at once (GB/T 30428 step 6 follows step 5 without a queue).
            new = apply_transition(new, Action.REQUEST_CHECK, actor=Actor("dispatch-worker", CaseRole.SYSTEM),
                                   now=now, deadlines=runtime.deadlines)  # fmt: skip
        return new

    case = await _update(runtime, case_id, change)
    # The answer is the whole case, notes included: a read like GET (the action itself is in the history).
    await audit_read(runtime, principal, "case_read", f"case:{case.case_id}", case.case_id, 1)
    return Acted(case)


async def _route_by_hand(runtime: DispatchRuntime, principal: Principal, case_id: str, department: str | None) -> Case:
    """A dispatcher of the city root routes a case of the unrouted queue to a city department
    (``policy.unrouted``); the case then follows the normal flow from ``reported``."""
    if department is None:
        raise CaseRefusedError("route needs a department", code="invalid_argument")
    now = runtime.now()

    def change(case: Case) -> Case:
        if not in_scope(principal, case):
            raise NotFoundError("no such case")
        return route_by_hand(
            case, department, actor=case_actor(principal, Action.ROUTE), scope=principal.jurisdiction.split("/"),
            now=now, routing=runtime.routing,
        )  # fmt: skip

    case = await _update(runtime, case_id, change)
    await audit_read(runtime, principal, "case_read", f"case:{case.case_id}", case.case_id, 1)
    return case


async def _merge(runtime: DispatchRuntime, principal: Principal, case_id: str, into: str | None) -> Case:
    """Merge this case into ``into`` (docs/dispatch.md, "Merging"): the case that takes it first (a merge entry),
    then this one (cancelled, ``merged into``), so a failure between them leaves both open, never one closed
    with nowhere to go. Both must be visible to the caller and share a jurisdiction."""
    if into is None or not valid_case_id(into):
        raise CaseRefusedError("merge needs the id of the case to merge into", code="invalid_argument")
    absorbed = await visible_case(runtime, principal, case_id)
    target = await visible_case(runtime, principal, into)
    actor = case_actor(principal, Action.MERGE)
    now = runtime.now()

    def decides(case: Case) -> Case:
        # A merge decides on both cases: refused below the centre holding either (issue 15), like every action.
        if principal.role in (Role.DISPATCHER, Role.SUPERVISOR):
            check_may_decide(principal.jurisdiction.split("/"), case)
        return case

    try:
        merge_cases(decides(absorbed), decides(target), actor=actor, now=now)  # every refusal before any write
    except CaseError as exc:
        raise CaseRefusedError(str(exc), code=exc.code) from None

    def take(case: Case) -> Case:
        return merge_cases(absorbed, decides(case), actor=actor, now=now)[1]

    def close(case: Case) -> Case:
        return merge_cases(decides(case), kept, actor=actor, now=now)[0]

    # By the id of the case itself: ``into`` may be a folded report's announced id, which leads to it (an alias).
    kept = await _update(runtime, target.case_id, take)
    await runtime.store.add_occurrences(absorbed, kept.case_id)
    closed = await _update(runtime, case_id, close)
    await audit_read(runtime, principal, "case_read", f"case:{closed.case_id}", closed.case_id, 1)
    return closed


async def _update(runtime: DispatchRuntime, case_id: str, change: Callable[[Case], Case]) -> Case:
    try:
        return await runtime.store.update(case_id, change)
    except CaseError as exc:
        raise CaseRefusedError(str(exc), code=exc.code) from None


async def _request_extension(runtime: DispatchRuntime, principal: Principal, case_id: str, note: str | None) -> Acted:
    """The handler asks for the one extension; a dispatcher or supervisor grants it with ``postpone``."""
    if principal.role is not Role.HANDLER:
        raise CaseRefusedError("only the handling department requests an extension", code="not_permitted_role")
    case = await visible_case(runtime, principal, case_id)
    case_id = case.case_id  # the request is stored beside the case itself, whatever id led to it
    try:
        if case.state is not CaseState.IN_PROGRESS:
            raise IllegalTransitionError("an extension is requested while handling")
        if case.extension_used:
            raise CaseRefusedError("the case already had its one extension", code="extension_already_used")
        if note is not None and len(note) > NOTE_MAX_CHARS:
            raise CaseRefusedError("note too long", code="note_too_long")
    except CaseError as exc:
        raise CaseRefusedError(str(exc), code=exc.code) from None
    now = runtime.now()
    note = mask_personal(note).text if note else None  # personal data never stored (policy/masking.py)
    request = {"requested_at": now.isoformat(), "by": principal.principal_id, "note": note or ""}
    if not await runtime.store.request_extension(case_id, request):
        raise CaseRefusedError("an extension was already requested", code="extension_already_requested")
    await audit_read(runtime, principal, "case_read", f"case:{case_id}", case_id, 1)
    return Acted(case, request)


@dataclass(frozen=True, slots=True)
class HolderRead:
    """A holder reference, the case's own id (a folded report's announced id leads to it) and the id of the audit
    entry that recorded the read."""

    case_id: str
    holder_ref: str
    audit_id: str
    temperature_c: float | None = None  # a fever case's sentry reading (issue 18), read with its holder


async def read_holder(runtime: DispatchRuntime, principal: Principal, case_id: str) -> HolderRead:
    """The holder reference of an open case whose event class needs it, rate-limited per principal and audited
    (purpose epidemic_prevention, the holder's keyed hash as ``subject``) before it is returned."""
    case = await visible_case(runtime, principal, case_id)
    case_id = case.case_id  # the reference is sealed to the case's own id
    if case.state in TERMINAL_STATES:
        raise CaseRefusedError("the case is closed: its holder is no longer needed", code="case_closed")
    if case.event_class.value not in runtime.holder_read_classes:
        raise CaseRefusedError("this event class needs no holder", code="holder_not_needed")
    stored = await runtime.store.holder(case_id)
    if stored is None or not stored.get("holder_sealed"):
        raise NotFoundError("the case carries no holder reference", code="no_holder_reference")
    now: datetime = runtime.now()
    await runtime.holder_reads.take(principal.principal_id, now=now)
    try:
        holder_ref = runtime.sealer.open(stored["holder_sealed"], bound_to=case_binding(case_id))
    except SealError:
        await record_access(
            runtime.store.redis, principal=principal, action="read_holder_ref", obj=f"case:{case_id}",
            purpose=PURPOSE, now=now, case_ref=case_id, result_count=0, extra={"outcome": "unseal_failed"},
        )  # fmt: skip
        raise GatewayError("the holder reference is not this case's", code="unseal_failed") from None
    reading_c: float | None = None
    if (reading := stored.get("reading_sealed")) and runtime.store.note_sealer is not None:
        # A fever case (issue 18): the sentry's reading, kept only here, read with the holder it belongs to.
        # A reading that is not this case's is left out; the holder reference itself opened.
        with contextlib.suppress(SealError, ValueError):
            reading_c = float(runtime.store.note_sealer.open(reading, bound_to=reading_binding(case_binding(case_id))))
    # Audit first: if the trail cannot be written the reference does not leave (no unaudited access).
    audit_id = await record_access(
        runtime.store.redis, principal=principal, action="read_holder_ref", obj=f"case:{case_id}",
        purpose=PURPOSE, now=now, case_ref=case_id, result_count=1,
        extra={"subject": runtime.subjects.of(holder_ref), "outcome": "ok"},
    )  # fmt: skip
    return HolderRead(case_id, holder_ref, audit_id, reading_c)


async def file_report(
    runtime: DispatchRuntime, places: PlaceCache, principal: Principal, *, place_id: str, event_class: str,
    at: datetime | None, note: str | None,
) -> Filed:
    """Queue a site manager's report as an intake event. A place outside the manager's scope and a place that does
    not exist get the same 403; ``at`` is ``None`` when the given time did not parse."""
    # Scope before anything that depends on the place: the same answer whether or not the place exists.
    place = await places.get(place_id) if place_id in principal.places else None
    if place is None:
        raise ForbiddenError("place not in scope")
    if event_class not in {c.value for c in REPORT_EVENT_CLASSES}:
        raise CaseRefusedError("not a reportable event class", code="unknown_event_class")
    now = runtime.now()
    if at is None:
        raise CaseRefusedError("time must be an ISO 8601 instant with offset", code="invalid_report_time")
    if not now - REPORT_MAX_AGE <= at <= now + CLOCK_SKEW:
        raise CaseRefusedError("time is in the future or too old to report", code="invalid_report_time")
    if note is not None and len(note) > NOTE_MAX_CHARS:
        raise CaseRefusedError(f"note longer than {NOTE_MAX_CHARS} characters ({MASK_HINT})", code="note_too_long")
    masked = mask_personal(note) if note else None
    event_id = "r" + f"{int(now.timestamp() * 1000):012x}" + os.urandom(8).hex()
    event = report_event_fields(
        event_id=event_id, event_class=EventClass(event_class), place_id=place.place_id,
        jurisdiction=place.jurisdiction, reporter=principal.principal_id, occurred_at=at,
        note=runtime.store.seal_intake_note(event_id, masked.text) if masked else None, received_at=now,
    )  # fmt: skip
    case_id = case_id_for_event(event_id)
    # Filed under the reporter first: a report the manager is answered for is always in their list (people.py).
    await people.file_report(runtime, principal.principal_id, case_id=case_id, event_id=event_id,
                             event_class=event_class, place_id=place.place_id, now=now)  # fmt: skip
    await runtime.store.append_intake(event)
    return Filed(event_id, case_id, masked.text if masked else None, dict(masked.counts) if masked else None)


async def evaluate(
    runtime: DispatchRuntime, principal: Principal, *, start: datetime, end: datetime, level: JurisdictionLevel
) -> dict[str, Any]:
    """The evaluation figures of the cases in the caller's scope created in ``[start, end)`` (bounded range)."""
    if not start < end <= start + timedelta(days=runtime.settings.metrics_max_days):
        raise CaseRefusedError(
            f"to must follow from by at most {runtime.settings.metrics_max_days} days", code="invalid_range"
        )
    cases = await runtime.store.created_between(start, end, limit=runtime.settings.metrics_max_cases)
    doc = evaluation_document([c for c in cases if in_scope(principal, c)], start=start, end=end, level=level)
    doc["scope"] = principal.jurisdiction
    return doc
