"""Site managers' reports of non-compliance (``POST /v1/reports``) and the dispatch evaluation
(``GET /v1/dispatch/metrics``, GB/T 30428 step 7).

A report becomes an intake event (``source=report``) exactly like a scan's exception; the case id is derived
from the event id, so the answer can name the case before the consumer has made it. A place outside the
manager's scope and a place that does not exist get the same 403, so the API reveals no place ids.

The note is personal data: ID-card numbers, mobile numbers and e-mail addresses in it are masked
(``policy/masking.py``) before the event is written, and the answer shows the note as it was stored.
"""

from __future__ import annotations

import os
from datetime import timedelta

from aiohttp import web

from gateway.auth import PRINCIPAL, requires
from gateway.dispatch.evaluation import evaluation_document, parse_instant
from gateway.dispatch.people import file_report
from gateway.dispatch.runtime import DISPATCH, in_scope
from gateway.dispatch.store import case_id_for_event
from gateway.errors import BadRequestError, CaseRefusedError, ForbiddenError
from gateway.http import json_response, query_instant, query_params, read_json
from gateway.intake import REPORT_EVENT_CLASSES, report_event_fields
from gateway.principals import Role
from gateway.trust.state import PLACES
from policy.casework import NOTE_MAX_CHARS
from policy.masking import mask_personal
from policy.routing import EventClass, JurisdictionLevel

__all__ = ["REPORT_CLASSES", "routes"]

MAX_BODY = 8 * 1024
REPORT_CLASSES = REPORT_EVENT_CLASSES
# Issue 15 "time is honest": a report tells of the last day, not of last week, and never of the future. The one
# minute of skew allows for a manager's phone clock running ahead; the case dates from the intake anyway.
CLOCK_SKEW = timedelta(minutes=1)
REPORT_MAX_AGE = timedelta(hours=24)
_MASK_HINT = "ID-card numbers, mobile numbers and e-mail addresses in a note are masked before it is stored"


routes = web.RouteTableDef()


@routes.post("/v1/reports")
@requires(Role.SITE_MANAGER)
async def post_report(request: web.Request) -> web.Response:
    """``{"event_class", "place", "time", "note"?}`` → 202 with the event id, the case id it becomes and the note
    as stored (personal data masked) with the count of each kind masked."""
    runtime = request.app[DISPATCH]
    principal = request[PRINCIPAL]
    body = await read_json(request, limit=MAX_BODY)
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    place_id, event_class, at_raw, note = (body.get(k) for k in ("place", "event_class", "time", "note"))
    if not isinstance(place_id, str) or not isinstance(at_raw, str) or not isinstance(event_class, str):
        raise BadRequestError("place, event_class and time are required strings")
    if note is not None and not isinstance(note, str):
        raise BadRequestError(f"note must be a string ({_MASK_HINT})")
    # Scope before anything that depends on the place: the same answer whether or not the place exists.
    place = await request.app[PLACES].get(place_id) if place_id in principal.places else None
    if place is None:
        raise ForbiddenError("place not in scope")
    if event_class not in {c.value for c in REPORT_CLASSES}:
        raise CaseRefusedError("not a reportable event class", code="unknown_event_class")
    now = runtime.now()
    try:
        at = parse_instant(at_raw)
    except ValueError:
        raise CaseRefusedError("time must be an ISO 8601 instant with offset", code="invalid_report_time") from None
    if not now - REPORT_MAX_AGE <= at <= now + CLOCK_SKEW:
        raise CaseRefusedError("time is in the future or too old to report", code="invalid_report_time")
    if note is not None and len(note) > NOTE_MAX_CHARS:
        raise CaseRefusedError(f"note longer than {NOTE_MAX_CHARS} characters ({_MASK_HINT})", code="note_too_long")
    masked = mask_personal(note) if note else None
    event_id = "r" + f"{int(now.timestamp() * 1000):012x}" + os.urandom(8).hex()
    event = report_event_fields(
        event_id=event_id, event_class=EventClass(event_class), place_id=place.place_id,
        jurisdiction=place.jurisdiction, reporter=principal.principal_id, occurred_at=at,
        note=runtime.store.seal_intake_note(event_id, masked.text) if masked else None, received_at=now,
    )  # fmt: skip
    case_id = case_id_for_event(event_id)
    # Filed under the reporter first: a report the manager is answered for is always in their list (people.py).
    await file_report(runtime, principal.principal_id, case_id=case_id, event_id=event_id,
                      event_class=event_class, place_id=place.place_id, now=now)  # fmt: skip
    await runtime.store.append_intake(event)
    answer: dict[str, object] = {"event_id": event_id, "case_id": case_id, "status": "queued"}
    if masked is not None:
        answer.update(note=masked.text, masked=masked.counts)
    return json_response(answer, status=202)


@routes.get("/v1/dispatch/metrics")
@requires(Role.SUPERVISOR, Role.DISPATCHER)
async def get_metrics(request: web.Request) -> web.Response:
    """``?from=&to=&level=`` over the caller's jurisdiction subtree; the range is bounded."""
    runtime = request.app[DISPATCH]
    principal = request[PRINCIPAL]
    # A malformed or out-of-range value is the request's fault (400, naming it); a range the values make that the
    # policy refuses (empty, too long) is ``invalid_range`` (422).
    q = query_params(request)
    start, end = query_instant(q, "from"), query_instant(q, "to")
    assert start is not None and end is not None
    try:
        level = JurisdictionLevel(q.get("level", "district"))
    except ValueError:
        raise BadRequestError("query parameter 'level' must be a jurisdiction level") from None
    if not start < end <= start + timedelta(days=runtime.settings.metrics_max_days):
        raise CaseRefusedError(
            f"to must follow from by at most {runtime.settings.metrics_max_days} days", code="invalid_range"
        )
    cases = await runtime.store.created_between(start, end, limit=runtime.settings.metrics_max_cases)
    doc = evaluation_document([c for c in cases if in_scope(principal, c)], start=start, end=end, level=level)
    doc["scope"] = principal.jurisdiction
    return json_response(doc)
