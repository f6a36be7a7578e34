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

import re
from typing import Any

from aiohttp import web

from gateway.auth import PRINCIPAL, requires
from gateway.dispatch import operations
from gateway.dispatch.attachments import attachment_list
from gateway.dispatch.operations import QueueFilter
from gateway.dispatch.runtime import DISPATCH
from gateway.dispatch.store import FOLD_MAX_OCCURRENCES, Occurrences, valid_case_id
from gateway.dispatch.webhooks import notifications_of
from gateway.errors import BadRequestError, CaseRefusedError, NotFoundError
from gateway.http import json_response, query_params, read_json
from gateway.principals import Role
from policy.casework import Case, CaseState, case_to_fields, entry_to_fields
from policy.routing import UNROUTED

__all__ = ["case_json", "extension_json", "routes"]

MAX_BODY = 8 * 1024
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


def _case_id(request: web.Request) -> str:
    case_id = request.match_info["case_id"]
    if not valid_case_id(case_id):
        raise NotFoundError("no such case")
    return case_id


@routes.get("/v1/cases")
@requires(Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR)
async def list_cases(request: web.Request) -> web.Response:
    """The caller's queue of open cases: ``?state=&overdue=true|false&department=&limit=&cursor=``; the city's
    unrouted queue is ``?department=unrouted`` (its cases lie at the city root: city dispatchers see them)."""
    runtime = request.app[DISPATCH]
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
    found, cursor = await operations.queue_page(runtime, request[PRINCIPAL], QueueFilter(state, overdue, department),
                                                limit=limit, cursor=cursor)
    # A page may hold a few more than ``limit`` (the last SSCAN step's matches): never skip a case.
    return json_response(
        {"cases": [case_json(c, history=False) for c in found], "next_cursor": str(cursor) if cursor else None}
    )


@routes.get("/v1/cases/{case_id}")
@requires(Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR)
async def get_case(request: web.Request) -> web.Response:
    runtime = request.app[DISPATCH]
    case_id = _case_id(request)
    # Audited before the case (its notes are personal data) leaves the gateway: no trail, no read.
    case, extension = await operations.read_case(runtime, request[PRINCIPAL], case_id)
    case_id = case.case_id  # a folded report's announced id leads to the case (operations.read_case)
    doc = case_json(case)
    doc["extension_request"] = extension_json(extension)
    doc["occurrences"] = _occurrences_json(await runtime.store.occurrences(case))
    if runtime.outbox is not None:  # department webhook deliveries (gateway/dispatch/webhooks.py)
        doc["notifications"] = await notifications_of(runtime.store.redis, case_id)
    doc["attachments"] = await attachment_list(runtime, case.case_id)  # no content: a download is its own read
    return json_response(doc)


def _occurrences_json(found: Occurrences) -> dict[str, Any]:
    """The events folded into the case (docs/dispatch.md, "Merging"): the count and the oldest times."""
    return {
        "count": found.count,
        "times": [t.isoformat(timespec="milliseconds").replace("+00:00", "Z") for t in found.times],
        "times_max": FOLD_MAX_OCCURRENCES,
    }


def extension_json(request: dict[str, str] | None) -> dict[str, Any] | None:
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
    case_id = _case_id(request)
    body = await read_json(request, limit=MAX_BODY)
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    name = _text_field(body, "action") or ""
    note = _text_field(body, "note")
    department = _text_field(body, "department")
    result = _text_field(body, "result") if name == "check" else None
    into = _text_field(body, "into") if name == "merge" else None
    if "closure_kind" in body:
        # Issue 15: normal/overdue/special/error follow from the case (policy.casework.closure_kind_for); a closer
        # who could choose would choose "normal" for a late case.
        raise CaseRefusedError("the closure kind is set by the rules, not chosen", code="closure_kind_set_by_rules")
    acted = await operations.act(runtime, request[PRINCIPAL], case_id, name, note=note, department=department,
                                 result=result, into=into)
    doc = case_json(acted.case)
    if acted.extension_request is not None:
        doc["extension_request"] = extension_json(acted.extension_request)
        return json_response(doc, status=202)
    return json_response(doc)


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
    read = await operations.read_holder(request.app[DISPATCH], request[PRINCIPAL], _case_id(request))
    doc: dict[str, object] = {"case_id": read.case_id, "holder_ref": read.holder_ref}
    if read.temperature_c is not None:
        doc["temperature_c"] = read.temperature_c
    return json_response(doc)
