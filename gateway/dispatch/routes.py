"""The case API of dispatchers, department handlers and supervisors, and the audited holder read.

Scope (PRIVACY.md "Access"): a dispatcher or supervisor sees the cases of places inside its
jurisdiction subtree, a handler the cases of its department. A case outside the caller's scope gets exactly
the answer of a missing one (404 ``not_found``), so the API is no oracle for other areas' cases.

A dispatcher acts as the ``intake_operator`` for accept, cancel and file, and as the ``shift_lead`` for
everything else; a handler as ``department``; a supervisor as ``supervisor`` (``policy.casework`` roles).
Seeing is not deciding (issue 15): a dispatcher or supervisor acts only on a case held by its centre or one
below it (``policy.authority.may_decide``); once a case is escalated above its centre it still reads the case
and gets 403 ``escalated_above_you`` for any action. The closure kind follows from the case, never the request.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from crypto.sealing import SealError, case_binding, reading_binding
from gateway.auth import PRINCIPAL, requires
from gateway.dispatch.attachments import attachment_list
from gateway.dispatch.runtime import DISPATCH, DispatchRuntime, in_scope
from gateway.dispatch.store import FOLD_MAX_OCCURRENCES, Occurrences, valid_case_id
from gateway.dispatch.webhooks import notifications_of
from gateway.errors import BadRequestError, CaseRefusedError, GatewayError, NotFoundError
from gateway.http import json_response, query_params, read_json
from gateway.principals import Principal, Role
from gateway.privacy.audit import record_access
from policy.authority import check_may_decide
from policy.case_errors import CaseError, IllegalTransitionError
from policy.casework import (
    NOTE_MAX_CHARS,
    TERMINAL_STATES,
    Action,
    Actor,
    Case,
    CaseState,
    apply_transition,
    case_to_fields,
    entry_to_fields,
)
from policy.casework import Role as CaseRole
from policy.masking import mask_personal
from policy.merging import merge_cases
from policy.purpose import PURPOSE
from policy.routing import UNROUTED
from policy.unrouted import route_by_hand

__all__ = ["case_json", "routes"]

MAX_BODY = 8 * 1024
_ACTIONS: dict[str, Action] = {
    a.value: a
    for a in (Action.ACCEPT, Action.CANCEL, Action.FILE, Action.DISPATCH, Action.START, Action.RETURN,
              Action.FEED_BACK, Action.POSTPONE, Action.HANG, Action.REQUEST_CHECK, Action.CLOSE, Action.REWORK)
}  # fmt: skip
_INTAKE_ACTIONS = frozenset({Action.ACCEPT, Action.CANCEL, Action.FILE})
_SCAN_STEPS = 10  # SSCAN steps one queue page may take: bounded work per request
_CURSOR_MAX = 2**64 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")


routes = web.RouteTableDef()


def case_json(case: Case, *, history: bool = True) -> dict[str, Any]:
    """A case as JSON; notes are returned as stored (masked: ``policy.masking``) and never rendered (JSON only, no
    HTML anywhere); a note past the scan-log retention reads ``"note": null, "note_expired": true``."""
    doc: dict[str, Any] = dict(case_to_fields(case))
    for name in ("urgent", "overdue", "extension_used"):
        doc[name] = doc[name] == "1"
    for name in ("escalation_count", "rework_count", "return_count"):
        doc[name] = int(doc[name])
    for name in ("stage_deadline", "closure_kind", "occurred_at"):
        doc[name] = doc[name] or None
    if history:
        doc["history"] = [
            {k: (v or None) if k in ("note", "deadline") else v for k, v in entry_to_fields(e).items()}
            | {"note_expired": e.note_expired}
            for e in case.history
        ]
    return doc


def _case_actor(principal: Principal, action: Action) -> Actor:
    if principal.role is Role.HANDLER:
        return Actor(principal.principal_id, CaseRole.DEPARTMENT, principal.department)
    if principal.role is Role.SUPERVISOR:
        return Actor(principal.principal_id, CaseRole.SUPERVISOR)
    role = CaseRole.INTAKE_OPERATOR if action in _INTAKE_ACTIONS else CaseRole.SHIFT_LEAD
    return Actor(principal.principal_id, role)


def _case_id(request: web.Request) -> str:
    case_id = request.match_info["case_id"]
    if not valid_case_id(case_id):
        raise NotFoundError("no such case")
    return case_id


async def _visible_case(runtime: DispatchRuntime, principal: Principal, case_id: str) -> Case:
    case = await runtime.store.get(case_id)
    if case is None or not in_scope(principal, case):
        raise NotFoundError("no such case")
    return case


@routes.get("/v1/cases")
@requires(Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR)
async def list_cases(request: web.Request) -> web.Response:
    """The caller's queue of open cases: ``?state=&overdue=true|false&department=&limit=&cursor=``; the city's
    unrouted queue is ``?department=unrouted`` (its cases lie at the city root: city dispatchers see them)."""
    runtime = request.app[DISPATCH]
    principal = request[PRINCIPAL]
    q = query_params(request)
    try:
        # ASCII digits only: int() would also take " 5", "1_0" and other scripts' digits.
        if not all(_DIGITS.fullmatch(q.get(name, "0")) for name in ("limit", "cursor")):
            raise ValueError("not digits")
        limit = int(q.get("limit", "50"))
        cursor = int(q.get("cursor", "0"))
        state = CaseState(q["state"]) if q.get("state") else None
    except ValueError:
        raise BadRequestError("limit and cursor are integers; state is a case state") from None
    if not 1 <= limit <= runtime.settings.page_max or cursor < 0:
        raise BadRequestError(f"limit must be in [1, {runtime.settings.page_max}]")
    if cursor > _CURSOR_MAX:  # SSCAN's cursor is an unsigned 64-bit integer; Redis refuses a larger one
        raise BadRequestError("cursor is not one this API returned")
    if q.get("overdue", "") not in ("true", "false", ""):
        raise BadRequestError("overdue is true or false")
    overdue = {"true": True, "false": False, "": None}[q.get("overdue", "")]
    department = q.get("department") or None
    if department is not None and department != UNROUTED and department not in runtime.routing.departments():
        raise BadRequestError("department is one of the routing table's, or unrouted")
    found: list[Case] = []
    for _ in range(_SCAN_STEPS):
        cursor, ids = await runtime.store.scan_open(cursor, max(limit, 50))
        for case in await runtime.store.get_many(ids):
            if (
                in_scope(principal, case)
                and (state is None or case.state is state)
                and (overdue is None or case.overdue is overdue)
                and (department is None or case.department == department)
            ):
                found.append(case)
        if cursor == 0 or len(found) >= limit:
            break
    found.sort(key=lambda c: (c.created_at, c.case_id))
    # The queue carries no note text: one audit entry per page is the record of who listed which cases.
    await _audit_read(runtime, principal, "case_list", "cases", "", len(found))
    # A page may hold a few more than ``limit`` (the last SSCAN step's matches): never skip a case.
    return json_response(
        {"cases": [case_json(c, history=False) for c in found], "next_cursor": str(cursor) if cursor else None}
    )


@routes.get("/v1/cases/{case_id}")
@requires(Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR)
async def get_case(request: web.Request) -> web.Response:
    runtime = request.app[DISPATCH]
    case = await _visible_case(runtime, request[PRINCIPAL], _case_id(request))
    case_id = case.case_id  # a folded report's announced id leads to the case: audit and read under the case's own
    doc = case_json(case)
    doc["extension_request"] = _extension_json(await runtime.store.extension_request(case.case_id))
    doc["occurrences"] = _occurrences_json(await runtime.store.occurrences(case))
    if runtime.outbox is not None:  # department webhook deliveries (gateway/dispatch/webhooks.py)
        doc["notifications"] = await notifications_of(runtime.store.redis, case_id)
    doc["attachments"] = await attachment_list(runtime, case.case_id)  # no content: a download is its own read
    # Audit before the case (its notes are personal data) leaves the gateway: no trail, no read.
    await _audit_read(runtime, request[PRINCIPAL], "case_read", f"case:{case_id}", case_id, 1)
    return json_response(doc)


async def _audit_read(
    runtime: DispatchRuntime, principal: Principal, action: str, obj: str, case_ref: str, count: int
) -> None:
    await record_access(runtime.store.redis, principal=principal, action=action, obj=obj, purpose=PURPOSE,
                        now=runtime.now(), case_ref=case_ref, result_count=count)  # fmt: skip


def _occurrences_json(found: Occurrences) -> dict[str, Any]:
    """The events folded into the case (docs/dispatch.md, "Merging"): the count and the oldest times."""
    return {
        "count": found.count,
        "times": [t.isoformat(timespec="milliseconds").replace("+00:00", "Z") for t in found.times],
        "times_max": FOLD_MAX_OCCURRENCES,
    }


def _extension_json(request: dict[str, str] | None) -> dict[str, Any] | None:
    if request is None:
        return None
    return {**request, "note": request.get("note") or None, "note_expired": request.get("note_expired") == "1"}


def _text_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequestError(f"{name} must be a string")
    return value


@routes.post("/v1/cases/{case_id}/actions")
@requires(Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR)
async def act_on_case(request: web.Request) -> web.Response:
    """One workflow step: ``{"action": ..., "note"?, "department"?, "result"?}``."""
    runtime = request.app[DISPATCH]
    principal = request[PRINCIPAL]
    case_id = _case_id(request)
    body = await read_json(request, limit=MAX_BODY)
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    name = _text_field(body, "action") or ""
    note = _text_field(body, "note")
    department = _text_field(body, "department")
    if "closure_kind" in body:
        # Issue 15: normal/overdue/special/error follow from the case (policy.casework.closure_kind_for); a closer
        # who could choose would choose "normal" for a late case.
        raise CaseRefusedError("the closure kind is set by the rules, not chosen", code="closure_kind_set_by_rules")
    if department is not None and department not in runtime.routing.departments():
        raise CaseRefusedError("unknown department", code="invalid_argument")
    if name == "request_extension":
        return await _request_extension(runtime, principal, case_id, note)
    if name == "route":
        return await _route_by_hand(runtime, principal, case_id, department)
    if name == "merge":
        return await _merge(runtime, principal, case_id, _text_field(body, "into"))
    if name == "check":
        result = _text_field(body, "result")
        if result not in ("pass", "fail"):
            raise CaseRefusedError("check needs result pass or fail", code="invalid_argument")
        action = Action.CLOSE if result == "pass" else Action.REWORK
    elif name in _ACTIONS:
        action = _ACTIONS[name]
    else:
        raise CaseRefusedError("unknown action", code="unknown_action")
    now = runtime.now()

    def change(case: Case) -> Case:
        if not in_scope(principal, case):
            raise NotFoundError("no such case")
        if principal.role in (Role.DISPATCHER, Role.SUPERVISOR):
            check_may_decide(principal.jurisdiction.split("/"), case)
        new = apply_transition(
            case,
            action,
            actor=_case_actor(principal, action),
            now=now,
            deadlines=runtime.deadlines,
            note=note,
            department=department,
        )
        if department is not None:  # a dispatch's (apply_transition refuses it elsewhere): it must serve the place
            runtime.routing.check_serves(department, case.jurisdiction)
        if action is Action.FEED_BACK:
            # The feedback goes to checking at once (GB/T 30428 step 6 follows step 5 without a queue).
            new = apply_transition(
                new,
                Action.REQUEST_CHECK,
                actor=Actor("dispatch-worker", CaseRole.SYSTEM),
                now=now,
                deadlines=runtime.deadlines,
            )
        return new

    case = await _update(runtime, case_id, change)
    # The answer is the whole case, notes included: a read like GET (the action itself is in the history).
    await _audit_read(runtime, principal, "case_read", f"case:{case.case_id}", case.case_id, 1)
    return json_response(case_json(case))


async def _route_by_hand(
    runtime: DispatchRuntime, principal: Principal, case_id: str, department: str | None
) -> web.Response:
    """A dispatcher of the city root routes a case of the unrouted queue to a city department
    (``policy.unrouted``); the case then follows the normal flow from ``reported``."""
    if department is None:
        raise CaseRefusedError("route needs a department", code="invalid_argument")
    now = runtime.now()

    def change(case: Case) -> Case:
        if not in_scope(principal, case):
            raise NotFoundError("no such case")
        return route_by_hand(
            case, department, actor=_case_actor(principal, Action.ROUTE), scope=principal.jurisdiction.split("/"),
            now=now, routing=runtime.routing,
        )  # fmt: skip

    case = await _update(runtime, case_id, change)
    await _audit_read(runtime, principal, "case_read", f"case:{case.case_id}", case.case_id, 1)
    return json_response(case_json(case))


async def _merge(runtime: DispatchRuntime, principal: Principal, case_id: str, into: str | None) -> web.Response:
    """Merge this case into ``into`` (docs/dispatch.md, "Merging"): the case that takes it first (a merge entry),
    then this one (cancelled, ``merged into``), so a failure between them leaves both open, never one closed
    with nowhere to go. Both must be visible to the caller and share a jurisdiction."""
    if into is None or not valid_case_id(into):
        raise CaseRefusedError("merge needs the id of the case to merge into", code="invalid_argument")
    absorbed = await _visible_case(runtime, principal, case_id)
    target = await _visible_case(runtime, principal, into)
    actor = _case_actor(principal, Action.MERGE)
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
    await _audit_read(runtime, principal, "case_read", f"case:{closed.case_id}", closed.case_id, 1)
    return json_response(case_json(closed))


async def _update(runtime: DispatchRuntime, case_id: str, change: Callable[[Case], Case]) -> Case:
    try:
        return await runtime.store.update(case_id, change)
    except CaseError as exc:
        raise CaseRefusedError(str(exc), code=exc.code) from None


async def _request_extension(
    runtime: DispatchRuntime, principal: Principal, case_id: str, note: str | None
) -> web.Response:
    """The handler asks for the one extension; a dispatcher or supervisor grants it with ``postpone``."""
    if principal.role is not Role.HANDLER:
        raise CaseRefusedError("only the handling department requests an extension", code="not_permitted_role")
    case = await _visible_case(runtime, principal, case_id)
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
    doc = case_json(case)
    doc["extension_request"] = _extension_json(request)
    await _audit_read(runtime, principal, "case_read", f"case:{case_id}", case_id, 1)
    return json_response(doc, status=202)


@routes.get("/v1/cases/{case_id}/holder")
@requires(Role.HANDLER, Role.SUPERVISOR)
async def read_holder(request: web.Request) -> web.Response:
    """The holder reference of a case, and nothing else (issue 14 "holder reads are minimal").

    Only while the case is open, only for event classes whose follow-up needs the holder (setting
    ``holder_read_classes``), at most ``holder_reads_per_hour`` per principal; opened with the case id as the
    seal's associated data, so a reference copied in from another case fails (audited, ``unseal_failed``).
    Audited before the answer leaves: purpose epidemic_prevention, case reference = case id, and the holder's
    keyed hash as ``subject`` so a data subject's access request finds the read.
    """
    runtime = request.app[DISPATCH]
    principal = request[PRINCIPAL]
    case = await _visible_case(runtime, principal, _case_id(request))
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
    doc: dict[str, object] = {"case_id": case_id, "holder_ref": holder_ref}
    if (reading := stored.get("reading_sealed")) and runtime.store.note_sealer is not None:
        # A fever case (issue 18): the sentry's reading, kept only here, read with the holder it belongs to.
        # A reading that is not this case's is left out; the holder reference itself opened.
        with contextlib.suppress(SealError, ValueError):
            doc["temperature_c"] = float(runtime.store.note_sealer.open(
                reading, bound_to=reading_binding(case_binding(case_id))))
    # Audit first: if the trail cannot be written the reference does not leave (no unaudited access).
    await record_access(
        runtime.store.redis, principal=principal, action="read_holder_ref", obj=f"case:{case_id}",
        purpose=PURPOSE, now=now, case_ref=case_id, result_count=1,
        extra={"subject": runtime.subjects.of(holder_ref), "outcome": "ok"},
    )  # fmt: skip
    return json_response(doc)
