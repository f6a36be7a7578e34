"""What each route takes and answers, for the OpenAPI document (``gateway/openapi.py`` adds paths, methods,
roles and the error shape from the router itself).

One entry per ``(METHOD, path template)``; a route without an entry, or an entry without a route, fails the
document's build and its test. Schemas say what a client may rely on: required keys and their types. Answers
allow further keys (``additionalProperties`` is left open) so that adding a field is not a breaking change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ROUTE_DOCS", "QueryParam", "RouteDoc"]


@dataclass(frozen=True, slots=True)
class QueryParam:
    name: str
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False
    location: str = "query"  # or "header"

    def to_openapi(self) -> dict[str, Any]:
        return {"name": self.name, "in": self.location, "required": self.required, "schema": dict(self.schema),
                "description": self.description}


@dataclass(frozen=True, slots=True)
class RouteDoc:
    operation_id: str
    tag: str
    summary: str
    ok_schema: Mapping[str, Any]
    ok_status: int = 200
    ok_description: str = "the answer"
    ok_media_type: str = "application/json"
    body: Mapping[str, Any] | None = None
    body_media_type: str = "application/json"
    ok_media_types_more: tuple[str, ...] = ()  # further media types of the answer (a download's sniffed type)
    query: tuple[QueryParam, ...] = ()
    description: str = ""


def _obj(required: Mapping[str, Any], optional: Mapping[str, Any] | None = None, *, closed: bool = False
         ) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "required": sorted(required),
                              "properties": {**required, **(optional or {})}}
    if closed:
        schema["additionalProperties"] = False
    return schema


_STR: Mapping[str, Any] = {"type": "string"}
_STR_OR_NULL: Mapping[str, Any] = {"type": ["string", "null"]}
_INT: Mapping[str, Any] = {"type": "integer"}
_BOOL: Mapping[str, Any] = {"type": "boolean"}
_TIME: Mapping[str, Any] = {"type": "string", "description": "ISO 8601 instant with offset"}
# An instant in a query: any ``date-time`` is generated and sent; the gateway takes [2000, 2100) (gateway/http.py).
_QUERY_TIME: Mapping[str, Any] = {"type": "string", "format": "date-time",
                                  "description": "ISO 8601 instant with offset, in [2000, 2100)"}
_CODE: Mapping[str, Any] = {"type": "string", "minLength": 1, "maxLength": 8192,
                            "description": "the presented code: NH1:… (native) or HC1:… (EU DCC)"}
_PLACE_FIELDS: Mapping[str, Any] = {
    "place_code": {"type": "string", "description": "the venue's signed place code (apps)"},
    "place": {"type": "string", "description": "a place id inside the device's scope"},
}
_OUTCOME = _obj({
    "decision": {"type": "string", "enum": ["admit", "deny", "review"]},
    "reason": _STR, "colour": _STR_OR_NULL, "scan_id": _STR, "checked_at": _TIME, "degraded": _BOOL,
    "rule_id": _STR_OR_NULL, "rules_version": _STR_OR_NULL,
}, {"via": {"const": "id_card", "description": "present when the holder was found by identity card (issue 18)"}})
# The digital sentry's inputs (issue 18, docs/sentry.md): an identity card instead of a code, and a temperature.
_SENTRY_FIELDS: Mapping[str, Any] = {
    "id_card": {"type": "string", "description": "a resident identity card number (GB 11643, 18 characters or "
                "the 15-digit old form) instead of `code`; only from a device registered with `devices add "
                "--id-card` (403 `id_card_not_allowed`); invalid: 400 `invalid_id_card`; never stored or echoed"},
    "temperature_c": {"type": "number", "description": "body temperature in °C, 30.0-45.0 (else 400 "
                      "`invalid_temperature`); at or above the venue class's fever threshold: deny / `fever`"},
}
_PRESENTATION = {"type": "object", "properties": {"code": _CODE, **_SENTRY_FIELDS, **_PLACE_FIELDS},
                 "anyOf": [{"required": ["code"]}, {"required": ["id_card"]}],
                 "description": "exactly one of `code` and `id_card`"}
_BATCH_ITEM = {"anyOf": [_CODE, {"type": "object", "properties": {"code": _CODE, **_SENTRY_FIELDS},
                                 "anyOf": [{"required": ["code"]}, {"required": ["id_card"]}]}]}
_CASE = _obj({
    "case_id": _STR, "event_class": _STR, "state": _STR, "department": _STR, "level": _STR, "place_id": _STR,
    "jurisdiction": _STR, "created_at": _TIME, "overdue": _BOOL, "urgent": _BOOL,
}, {"history": {"type": "array", "items": {"type": "object"}}, "stage_deadline": _STR_OR_NULL,
    "closure_kind": _STR_OR_NULL, "occurred_at": _STR_OR_NULL,
    # department webhook deliveries, present when a webhook table is configured (gateway/dispatch/webhooks.py)
    "notifications": {"type": "array", "items": _obj({
        "event": {"type": "string", "enum": ["dispatched", "escalated", "overdue"]}, "department": _STR,
        "status": {"type": "string", "enum": ["retrying", "delivered", "failed"]}, "attempts": _INT,
        "last_error_code": _STR_OR_NULL})}})  # fmt: skip
_IDEMPOTENCY_KEY = QueryParam(
    "Idempotency-Key", {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"},
    "a scanner's key for this request: the same key from the same principal within 60 s gets the stored answer "
    "(header `Idempotent-Replayed: true`), decided, logged and sent to dispatch once", location="header",
)
_OCCURRENCES = _obj({"count": _INT, "times": {"type": "array", "items": _TIME}, "times_max": _INT})
_SINCE_UNTIL = (
    QueryParam("since", _TIME, "start of the window", required=True),
    QueryParam("until", _TIME, "end of the window (at most 31 days after since)", required=True),
)
_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}
_SUBJECT_ACCESS = _obj({"subject": _STR, "entries": {"type": "array", "items": _ANY_OBJECT},
                        "next_cursor": _STR_OR_NULL})
_SUBJECT_ACCESS_BODY = _obj({"holder_ref": _STR, "purpose": {"const": "subject_access"}},
                            {"case_ref": _STR, "cursor": _STR})

ROUTE_DOCS: Mapping[tuple[str, str], RouteDoc] = {
    # --- operations ---------------------------------------------------------------------------------------------
    ("GET", "/healthz"): RouteDoc("healthz", "operations", "liveness: the process answers",
                                  _obj({"status": {"const": "ok"}})),
    ("GET", "/readyz"): RouteDoc(
        "readyz", "operations", "readiness: the store answers and every required trust list is usable",
        _obj({"ready": _BOOL, "redis": _BOOL, "degraded": _BOOL,
              "reasons": {"type": "array", "items": _STR}}),
        description="503 with the same body and its reasons when not ready.",
    ),
    ("GET", "/metrics"): RouteDoc(
        "metrics", "operations", "Prometheus metrics", {"type": "string"}, ok_media_type="text/plain",
        description="Needs `Authorization: Bearer <PLACEGATE_METRICS_TOKEN>` when that is set; otherwise "
                    "answers loopback peers only.",
    ),
    ("GET", "/openapi.json"): RouteDoc("openapi", "operations", "this document", _ANY_OBJECT),
    # --- scanning ----------------------------------------------------------------------------------------------
    ("POST", "/v1/scan"): RouteDoc(
        "scan", "scan", "decide admit / deny / review for one presented code", _OUTCOME,
        body=_PRESENTATION, query=(_IDEMPOTENCY_KEY,),
        description="A forged, stale or replayed code is a `deny` with its reason, not an error. The same code "
                    "at the same device within `PLACEGATE_SCAN_RETRY_WINDOW_S` (5 s) of its first presentation "
                    "is the scanner's retry: decided like the first, no replay case. A digital sentry may send "
                    "`id_card` instead of `code` and a `temperature_c` (docs/sentry.md).",
    ),
    ("POST", "/v1/scan/batch"): RouteDoc(
        "scan_batch", "scan", "one decision per code, in order (a turnstile bank)",
        _obj({"results": {"type": "array", "items": {"type": "object"}}}),
        body=_obj({"codes": {"type": "array", "items": _BATCH_ITEM, "minItems": 1, "maxItems": 1024}},
                  _PLACE_FIELDS),
        query=(_IDEMPOTENCY_KEY,),
        description="At most `PLACEGATE_MAX_BATCH_CODES` (64) codes; an item that is not a code at all answers "
                    "`{\"error\": \"malformed_code\"}` in its place. An item may be an object like a single "
                    "scan's body (`code` or `id_card`, `temperature_c`); an invalid identity card or reading "
                    "answers `{\"error\": \"invalid_id_card\"}` / `invalid_temperature` in its place.",
    ),
    # --- status feed -------------------------------------------------------------------------------------------
    ("PUT", "/v1/status"): RouteDoc(
        "put_status", "status", "upsert holder statuses (the health authority's feed)",
        _obj({"applied": _INT, "stale": _INT, "rejected": _INT,
              "results": {"type": "array", "items": {"type": "object"}}}),
        body=_obj({"records": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": _obj(
            {"holder": _STR, "colour": {"type": "string", "enum": ["green", "yellow", "red"]},
             "updated_at": _TIME},
            {"tested_at": _STR_OR_NULL, "test_result": _STR_OR_NULL, "vaccinated": _BOOL,
             "id_card": {"type": "string", "description": "the holder's identity card number (issue 18): "
                         "indexed by keyed hash only; invalid: the record is rejected with `invalid_id_card`"}})}}),
        description="At most 10,000 records; a bad record is reported by index and never fails the batch; "
                    "last-writer-wins by `updated_at`.",
    ),
    # --- dispatch ----------------------------------------------------------------------------------------------
    ("POST", "/v1/reports"): RouteDoc(
        "post_report", "dispatch", "a site manager reports non-compliance at one of their places",
        _obj({"event_id": _STR, "case_id": _STR, "status": _STR},
             {"note": _STR, "masked": {"type": "object", "additionalProperties": _INT}}), ok_status=202,
        body=_obj({"event_class": _STR, "place": _STR, "time": _TIME}, {"note": {"type": "string"}}),
        description="Personal data in the note (ID-card numbers, mobile numbers, e-mail addresses) is masked "
                    "before it is stored; the answer carries the note as stored and the count masked per kind.",
    ),
    ("GET", "/v1/cases"): RouteDoc(
        "list_cases", "dispatch", "the caller's queue of open cases",
        _obj({"cases": {"type": "array", "items": _CASE}, "next_cursor": _STR_OR_NULL}),
        query=(QueryParam("state", _STR, "a case state"),
               QueryParam("overdue", {"type": "string", "enum": ["true", "false"]}),
               QueryParam("department", _STR, "a department of the routing table, or `unrouted`: the city's "
                                               "unrouted queue (city dispatchers)"),
               QueryParam("limit", {"type": "string", "pattern": "^[0-9]{1,6}$"}),
               QueryParam("cursor", {"type": "string", "pattern": "^[0-9]{1,20}$"})),
        description="Every query parameter is checked: an unknown or repeated one, a value over 128 characters "
                    "or a cursor this API never returns is 400 `invalid_request` naming it.",
    ),
    ("GET", "/v1/cases/{case_id}"): RouteDoc(
        "get_case", "dispatch", "one case with its history (audited)",
        {**_CASE, "properties": {**_CASE["properties"], "occurrences": _OCCURRENCES}},
        description="`occurrences`: the events folded into the case (docs/dispatch.md, \"Merging\"): their "
                    "count and the times of the oldest `times_max` (100).",
    ),
    ("POST", "/v1/cases/{case_id}/actions"): RouteDoc(
        "act_on_case", "dispatch", "one workflow step on a case", _CASE,
        body=_obj({"action": _STR}, {"note": _STR, "department": _STR, "into": _STR,
                                     "result": {"type": "string", "enum": ["pass", "fail"]}}),
        description="Actions: accept, cancel, file, dispatch, start, return, feed_back, request_extension, "
                    "postpone, hang, request_check, check (with result pass|fail), close, rework, merge (with "
                    "`into`: a case of the same jurisdiction; this case ends cancelled, `merged into`), route (a city "
                    "dispatcher routes a case of the unrouted queue: `department` a city department). A "
                    "`department` must serve the case's place (422 `department_out_of_jurisdiction`); an "
                    "unrouted case takes only route and cancel (409 `case_unrouted`). Check and close "
                    "are a supervisor's (403 supervisor_required); a case escalated above the caller's centre "
                    "answers 403 escalated_above_you; the closure kind is set by the rules, and a closure_kind "
                    "field is refused (422 closure_kind_set_by_rules).",
    ),
    ("GET", "/v1/cases/{case_id}/holder"): RouteDoc(
        "read_holder", "dispatch", "the holder reference of a case (audited, rate-limited)",
        _obj({"case_id": _STR, "holder_ref": _STR},
             {"temperature_c": {"type": "number", "description": "a fever case's sentry reading (issue 18)"}}),
    ),
    ("GET", "/v1/dispatch/metrics"): RouteDoc(
        "dispatch_metrics", "dispatch", "evaluation per department over the caller's jurisdiction", _ANY_OBJECT,
        query=(QueryParam("from", _QUERY_TIME, required=True), QueryParam("to", _QUERY_TIME, required=True),
               QueryParam("level", {"type": "string", "enum": ["city", "district", "street", "grid", "community",
                                                               "building"]}, "jurisdiction level of the grouping")),
        description="A malformed, missing or out-of-range instant (before 2000 or from 2100 on) or an unknown "
                    "level is 400 `invalid_request` naming the parameter; `to` not after `from`, or a range "
                    "longer than `PLACEGATE_DISPATCH_METRICS_MAX_DAYS`, is 422 `invalid_range`.",
    ),
    ("GET", "/v1/reports"): RouteDoc(
        "list_reports", "dispatch", "a site manager's own reports and where their cases stand",
        _obj({"reports": {"type": "array", "items": _obj({
            "event_id": _STR_OR_NULL, "case_id": _STR, "event_class": _STR_OR_NULL, "place": _STR_OR_NULL,
            "filed_at": _TIME, "state": _STR}, {
            "level": _STR, "stage_started_at": _STR_OR_NULL, "stage_deadline": _STR_OR_NULL, "overdue": _BOOL,
            "closure_kind": _STR_OR_NULL, "merged_into": _STR})},
              "next_cursor": _STR_OR_NULL}),
        query=(QueryParam("limit", {"type": "string", "pattern": "^[0-9]{1,6}$"}),
               QueryParam("cursor", {"type": "string", "pattern": "^[0-9]{1,9}$"})),
        description="Newest first. Only the caller's reports; no note, no history, no holder. `state` is "
                    "`queued` until the report's case is made.",
    ),
    ("GET", "/v1/places/{place_id}/exceptions"): RouteDoc(
        "place_exceptions", "dispatch", "counts of exception scans at one of the caller's places, per day and reason",
        _obj({"place": _STR, "from": _STR, "to": _STR, "total": _INT,
              "reasons": {"type": "object", "additionalProperties": _INT},
              "days": {"type": "array", "items": _obj({
                  "day": _STR, "total": _INT, "reasons": {"type": "object", "additionalProperties": _INT},
                  "classes": {"type": "object", "additionalProperties": _INT}})}}),
        query=(QueryParam("from", {"type": "string", "format": "date"}, "first day (UTC), YYYY-MM-DD"),
               QueryParam("to", {"type": "string", "format": "date"}, "last day (UTC), YYYY-MM-DD; default today")),
        description="Days within today and the last 14 (default: the last 7); counts only. A place that is "
                    "not the caller's is 404 `not_found`, like a place that does not exist.",
    ),
    ("POST", "/v1/cases/{case_id}/attachments"): RouteDoc(
        "add_attachment", "dispatch", "attach a JPEG or PNG photo or a PDF to a case (raw body, at most 2 MB)",
        _obj({"case_id": _STR, "n": _INT, "content_type": _STR, "size": _INT, "sha256": _STR,
              "uploaded_at": _TIME, "uploaded_by": _STR}), ok_status=201,
        body={"type": "string", "format": "binary"}, body_media_type="application/octet-stream",
        description="The type is decided by the content (any declared type is ignored): anything else is 415 "
                    "`unsupported_attachment_type`; over 2 MB is 413 `attachment_too_large`; at most 20 per case "
                    "(409 `attachments_full`); a closed case takes none (409 `case_closed`). Sealed at rest; "
                    "audited. A site manager attaches to the case of their own report.",
    ),
    ("GET", "/v1/cases/{case_id}/attachments"): RouteDoc(
        "list_attachments", "dispatch", "the attachments of a case (no content)",
        _obj({"case_id": _STR, "attachments": {"type": "array", "items": _obj(
            {"n": _INT, "content_type": _STR, "size": _INT, "sha256": _STR, "uploaded_at": _TIME,
             "uploaded_by": _STR})}}),
        description="A site manager sees only the files they uploaded.",
    ),
    ("GET", "/v1/cases/{case_id}/attachments/{n}"): RouteDoc(
        "get_attachment", "dispatch", "download one attachment (audited)", {"type": "string", "format": "binary"},
        ok_media_type="image/png", ok_media_types_more=("image/jpeg", "application/pdf"),
        description="Answered with `Content-Disposition: attachment` and `X-Content-Type-Options: nosniff`; an "
                    "audit entry is written before the file leaves. A site manager downloads only the files they "
                    "uploaded.",
    ),
    # --- privacy -----------------------------------------------------------------------------------------------
    ("GET", "/v1/privacy/audit"): RouteDoc(
        "audit_query", "privacy", "the audit trail, bounded and paged (audited)",
        _obj({"entries": {"type": "array", "items": _ANY_OBJECT}, "next_cursor": _STR_OR_NULL}),
        query=(*_SINCE_UNTIL, QueryParam("principal", _STR), QueryParam("action", _STR),
               QueryParam("limit", {"type": "string", "pattern": "^[0-9]{1,4}$"}), QueryParam("cursor", _STR)),
    ),
    ("GET", "/v1/privacy/audit/verify"): RouteDoc(
        "audit_verify", "privacy", "walk the hash chain (audited)",
        _obj({"ok": _BOOL, "count": _INT, "problems": {"type": "array", "items": _STR}}),
        query=(QueryParam("anchor", _STR, "SEQ:HASH filed outside the store"),),
    ),
    ("GET", "/v1/privacy/retention"): RouteDoc(
        "retention_report", "privacy", "what is stored per data class, its expiry and every violation",
        _obj({"classes": _ANY_OBJECT, "violations": {"type": "array"}}),
    ),
    ("GET", "/v1/privacy/ropa"): RouteDoc("ropa", "privacy", "the record of processing activities", _ANY_OBJECT),
    ("POST", "/v1/privacy/approvals"): RouteDoc(
        "grant_approval", "privacy", "a privacy officer approves one trace by another person",
        _obj({"approval_id": _STR, "expires_at": _TIME}), ok_status=201,
        body=_obj({"requester": _STR, "case_ref": _STR, "holder_ref": _STR, "since": _TIME, "until": _TIME,
                   "purpose": _STR}, {"valid_s": _INT}),
        description="The requester must exist and may trace; the case must exist in the requester's "
                    "jurisdiction; only the holder's keyed hash is stored; single-use, at most 24 h.",
    ),
    ("POST", "/v1/privacy/trace"): RouteDoc(
        "trace", "privacy", "the visits of one holder under another officer's approval (audited)",
        _obj({"visits": {"type": "array", "items": _ANY_OBJECT}, "result_count": _INT}),
        body=_obj({"holder_ref": _STR, "purpose": _STR, "case_ref": _STR, "approval_id": _STR},
                  {"since": _TIME, "until": _TIME}),
        description="Only visits at places inside the requester's jurisdiction are returned.",
    ),
    ("POST", "/v1/privacy/subject-access"): RouteDoc(
        "subject_access", "privacy", "who read or traced one holder, when and under which case (audited)",
        _SUBJECT_ACCESS, body=_SUBJECT_ACCESS_BODY,
    ),
    ("GET", "/v1/privacy/subject-access"): RouteDoc(
        "subject_access_get", "privacy", "the same as the POST; reads the same JSON body (prefer POST)",
        _SUBJECT_ACCESS, body=_SUBJECT_ACCESS_BODY,
    ),
}
