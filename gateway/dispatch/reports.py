"""Site managers' reports of non-compliance (``POST /v1/reports``) and the dispatch evaluation
(``GET /v1/dispatch/metrics``, GB/T 30428 step 7).

A report becomes an intake event (``source=report``) exactly like a scan's exception; the case id is derived
from the event id, so the answer can name the case before the consumer has made it. A place outside the
manager's scope and a place that does not exist get the same 403, so the API reveals no place ids.

The note is personal data: ID-card numbers, mobile numbers and e-mail addresses in it are masked
(``policy/masking.py``) before the event is written, and the answer shows the note as it was stored.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from gateway.auth import PRINCIPAL, requires
from gateway.dispatch import operations
from gateway.dispatch.evaluation import parse_instant
from gateway.dispatch.operations import CLOCK_SKEW, MASK_HINT, REPORT_MAX_AGE
from gateway.dispatch.runtime import DISPATCH
from gateway.errors import BadRequestError
from gateway.http import json_response, query_instant, query_params, read_json
from gateway.intake import REPORT_EVENT_CLASSES
from gateway.principals import Role
from gateway.trust.state import PLACES
from policy.routing import JurisdictionLevel

__all__ = ["CLOCK_SKEW", "REPORT_CLASSES", "REPORT_MAX_AGE", "routes"]

MAX_BODY = 8 * 1024
REPORT_CLASSES = REPORT_EVENT_CLASSES


routes = web.RouteTableDef()


@routes.post("/v1/reports")
@requires(Role.SITE_MANAGER)
async def post_report(request: web.Request) -> web.Response:
    """``{"event_class", "place", "time", "note"?}`` → 202 with the event id, the case id it becomes and the note
    as stored (personal data masked) with the count of each kind masked."""
    body = await read_json(request, limit=MAX_BODY)
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    place_id, event_class, at_raw, note = (body.get(k) for k in ("place", "event_class", "time", "note"))
    if not isinstance(place_id, str) or not isinstance(at_raw, str) or not isinstance(event_class, str):
        raise BadRequestError("place, event_class and time are required strings")
    if note is not None and not isinstance(note, str):
        raise BadRequestError(f"note must be a string ({MASK_HINT})")
    at: datetime | None
    try:
        at = parse_instant(at_raw)
    except ValueError:
        at = None  # refused by file_report after the scope check, as before
    filed = await operations.file_report(request.app[DISPATCH], request.app[PLACES], request[PRINCIPAL],
                                         place_id=place_id, event_class=event_class, at=at, note=note)
    answer: dict[str, object] = {"event_id": filed.event_id, "case_id": filed.case_id, "status": "queued"}
    if filed.note is not None:
        answer.update(note=filed.note, masked=filed.masked)
    return json_response(answer, status=202)


@routes.get("/v1/dispatch/metrics")
@requires(Role.SUPERVISOR, Role.DISPATCHER)
async def get_metrics(request: web.Request) -> web.Response:
    """``?from=&to=&level=`` over the caller's jurisdiction subtree; the range is bounded."""
    # A malformed or out-of-range value is the request's fault (400, naming it); a range the values make that the
    # policy refuses (empty, too long) is ``invalid_range`` (422).
    q = query_params(request)
    start, end = query_instant(q, "from"), query_instant(q, "to")
    assert start is not None and end is not None
    try:
        level = JurisdictionLevel(q.get("level", "district"))
    except ValueError:
        raise BadRequestError("query parameter 'level' must be a jurisdiction level") from None
    doc = await operations.evaluate(request.app[DISPATCH], request[PRINCIPAL], start=start, end=end, level=level)
    return json_response(doc)
