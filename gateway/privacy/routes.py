"""The privacy officer's API: audit trail query and verification, retention report, record of processing
activities, trace approvals, the contact-tracing query and subject access. Every read here is itself audited."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime

from aiohttp import web

from gateway.appstate import REDIS, RULES, SETTINGS
from gateway.auth import PRINCIPAL, requires
from gateway.errors import BadRequestError, GatewayError, StoreUnavailableError
from gateway.http import json_response, query_params, read_json
from gateway.principals import Principal, Role
from gateway.privacy.audit import record_access
from gateway.privacy.oversight import (
    OVERSIGHT,
    audit_page,
    audited_case,
    audited_purpose,
    grant,
    parse_time,
    refused,
    retention,
    verify,
)
from gateway.privacy.ropa import build_ropa
from gateway.privacy.subjects import hasher_for, subject_access
from gateway.privacy.tracing import (
    case_in_trace_scope,
    consume_approval,
    load_approval,
    place_filter,
    trace_holder,
)
from policy.purpose import (
    ApprovalInvalidError,
    ApprovalRequiredError,
    InvalidRangeError,
    PurposeError,
    TraceRequest,
    check_subject_access,
    check_trace,
)

__all__ = ["OVERSIGHT", "routes"]

routes = web.RouteTableDef()

_HOLDER = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the opaque holder reference of the native code
_BODY_LIMIT = 4096


_refused = refused
_time = parse_time


def _int(raw: str | None, default: int) -> int:
    try:
        return default if raw is None else int(raw)
    except ValueError:
        raise BadRequestError("limit must be an integer") from None


@routes.get("/v1/privacy/audit")
@requires(Role.PRIVACY_OFFICER)
async def audit_query(request: web.Request) -> web.Response:
    """GET /v1/privacy/audit?since=&until=[&principal=&action=&limit=&cursor=]: bounded, paged, oldest first."""
    q = query_params(request)
    since, until = _time(q.get("since"), "since"), _time(q.get("until"), "until")
    page = await audit_page(request.app[REDIS], request.app[SETTINGS], request[PRINCIPAL], since=since, until=until,
                            limit=_int(q.get("limit"), 100), principal=q.get("principal") or "",
                            action=q.get("action") or "", cursor=q.get("cursor") or None)  # fmt: skip
    return json_response({"entries": [e.to_json() for e in page.entries], "next_cursor": page.next_cursor})


@routes.get("/v1/privacy/audit/verify")
@requires(Role.PRIVACY_OFFICER)
async def audit_verify(request: web.Request) -> web.Response:
    """GET /v1/privacy/audit/verify[?anchor=SEQ:HASH]: walk the chain; 200 with ok=false when it is broken."""
    anchor = None
    raw = query_params(request).get("anchor")
    if raw:
        m = re.fullmatch(r"(\d{1,15}):([0-9a-f]{64})", raw)
        if m is None:
            raise BadRequestError("anchor must be SEQ:HASH")
        anchor = (int(m[1]), m[2])
    report = await verify(request.app[REDIS], request[PRINCIPAL], anchor)
    return json_response(report.to_json())


@routes.get("/v1/privacy/retention")
@requires(Role.PRIVACY_OFFICER, Role.ADMIN)
async def privacy_retention(request: web.Request) -> web.Response:
    """GET /v1/privacy/retention: per data class what is stored, oldest record, expiry, expired days."""
    return json_response(await retention(request.app[REDIS], request.app[SETTINGS], request[PRINCIPAL]))


@routes.get("/v1/privacy/ropa")
@requires(Role.PRIVACY_OFFICER, Role.ADMIN)
async def privacy_ropa(request: web.Request) -> web.Response:
    """GET /v1/privacy/ropa: the record of processing activities of this running configuration."""
    app = request.app
    return json_response(build_ropa(app[SETTINGS], app[RULES], app, now=datetime.now(UTC)))


def _holder(body: dict[str, object]) -> str:
    holder = body.get("holder_ref")
    if not isinstance(holder, str) or _HOLDER.fullmatch(holder) is None:
        raise BadRequestError("holder_ref must be 1-64 of [A-Za-z0-9._-]")
    return holder


_audited_purpose = audited_purpose
_audited_case = audited_case


@routes.post("/v1/privacy/approvals")
@requires(Role.PRIVACY_OFFICER)
async def trace_approve(request: web.Request) -> web.Response:
    """POST /v1/privacy/approvals {requester, case_ref, holder_ref, since, until, purpose, valid_s?}: a single-use
    approval of one trace (two-person rule; the approving officer is never the requester).

    The requester must be an existing, usable principal of a role that may trace; the case must exist in the
    dispatch store and lie in the requester's jurisdiction; the window must lie inside retention; ``valid_s``
    (default 3600) at most a day. The stored approval holds the holder's keyed hash only. A refused grant is
    audited (``trace_approve_refused``) and answers 403/422 with a stable code; an unknown requester and an
    unknown or foreign case are one answer each.
    """
    body = await read_json(request, limit=_BODY_LIMIT)
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    holder = _holder(body)
    requester_id, case_ref, purpose = (str(body.get(k, "")) for k in ("requester", "case_ref", "purpose"))
    valid_s = body.get("valid_s", 3600)
    if not isinstance(valid_s, int) or isinstance(valid_s, bool):
        raise BadRequestError("valid_s must be an integer")
    granted = await grant(request.app[REDIS], request.app[SETTINGS], request[PRINCIPAL], holder=holder,
                          requester_id=requester_id, case_ref=case_ref, purpose=purpose,
                          since_raw=body.get("since"), until_raw=body.get("until"), valid_s=valid_s)  # fmt: skip
    return json_response(granted, status=201)


@routes.post("/v1/privacy/trace")
@requires(Role.PRIVACY_OFFICER, Role.DISPATCHER, Role.SUPERVISOR)
async def trace(request: web.Request) -> web.Response:
    """POST /v1/privacy/trace {holder_ref, purpose, case_ref, approval_id, since?, until?}: visits of one holder.

    A POST so the holder reference never appears in a URL or an access log. Every caller, a privacy officer
    too, presents an approval by another privacy officer that names them, this case, this holder and a window
    holding ``[since, until]`` (default: the approval's window); it is used up by this query. Only visits at
    places inside the caller's jurisdiction are returned. The trail records the holder as ``subject`` (keyed
    hash). Refusals are audited too; a bad approval is one answer (``approval_invalid``) whatever the reason.
    """
    body = await read_json(request, limit=_BODY_LIMIT)
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    holder = _holder(body)
    principal: Principal = request[PRINCIPAL]
    purpose, case_ref = str(body.get("purpose", "")), str(body.get("case_ref", ""))
    approval_id = str(body.get("approval_id") or "")
    redis = request.app[REDIS]
    settings = request.app[SETTINGS]
    subject = hasher_for(settings).of(holder)
    now = datetime.now(UTC)
    try:
        ask = TraceRequest(principal.principal_id, principal.role.value, purpose, case_ref,
                           _time(body.get("since"), "since"), _time(body.get("until"), "until"), subject)
        approval = await load_approval(redis, approval_id) if approval_id else None
        if approval_id and approval is None:
            raise ApprovalInvalidError("no usable approval")  # unknown looks like foreign or used
        since, until = check_trace(ask, approval, now=now, retention_days=settings.retention_days)
        if approval is None:  # check_trace refused that already; this keeps the type checker informed
            raise ApprovalRequiredError("another privacy officer's approval is required (two-person rule)")
        # The requester's scope is checked again at use: a jurisdiction changed since the grant counts now.
        if not await case_in_trace_scope(redis, principal, case_ref):
            raise ApprovalInvalidError("no usable approval")
        if not await consume_approval(redis, approval.approval_id):
            raise ApprovalInvalidError("no usable approval")
    except (PurposeError, GatewayError) as exc:
        code = exc.code if isinstance(exc, PurposeError) else exc.instance_code
        with contextlib.suppress(StoreUnavailableError):  # the refusal stands either way
            await record_access(redis, principal=principal, action="contact_trace_refused", obj="trace",
                                purpose=_audited_purpose(purpose), now=now, case_ref=_audited_case(case_ref),
                                extra={"outcome": code, "subject": subject})
        raise _refused(exc) if isinstance(exc, PurposeError) else exc from None
    result = await trace_holder(redis, holder, since=since, until=until, keep_place=place_filter(redis, principal))
    unlinkable = [d for d, s in result.days.items() if s == "unlinkable"]
    # Audited before the answer leaves: if the trail cannot be written, nothing is disclosed.
    await record_access(redis, principal=principal, action="contact_trace", obj=f"trace:{case_ref}",
                        purpose=purpose, now=now, case_ref=case_ref, result_count=len(result.visits),
                        extra={"window": f"{since.isoformat()}/{until.isoformat()}", "subject": subject,
                               "days": str(len(result.days)), "unlinkable_days": str(len(unlinkable)),
                               "approval": approval.approval_id, "approver": approval.approver_id})
    return json_response({**result.to_json(), "since": since.isoformat(), "until": until.isoformat()})


async def _subject_access(request: web.Request) -> web.Response:
    body = await read_json(request, limit=_BODY_LIMIT)
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    holder = _holder(body)
    purpose, case_ref = str(body.get("purpose", "")), str(body.get("case_ref") or "")
    cursor = body.get("cursor")
    if cursor is not None and (not isinstance(cursor, str) or re.fullmatch(r"\d{1,15}-\d{1,15}", cursor) is None):
        raise _refused(InvalidRangeError("malformed cursor"))
    officer: Principal = request[PRINCIPAL]
    redis = request.app[REDIS]
    subject = hasher_for(request.app[SETTINGS]).of(holder)
    now = datetime.now(UTC)
    try:
        check_subject_access(purpose, case_ref)
    except PurposeError as exc:
        with contextlib.suppress(StoreUnavailableError):
            await record_access(redis, principal=officer, action="subject_access_refused", obj="audit",
                                purpose=_audited_purpose(purpose), now=now, case_ref=_audited_case(case_ref),
                                extra={"outcome": exc.code, "subject": subject})
        raise _refused(exc) from None
    found = await subject_access(redis, subject, case_ref=case_ref, cursor=cursor)
    # Audited before the answer leaves, with the subject's hash: the query shows up in the next one.
    await record_access(redis, principal=officer, action="subject_access", obj="audit", purpose=purpose, now=now,
                        case_ref=_audited_case(case_ref), result_count=len(found.entries),
                        extra={"subject": subject, "scanned": str(found.scanned)})
    return json_response({"subject": subject, "entries": [e.to_json() for e in found.entries],
                          "next_cursor": found.next_cursor, "scanned": found.scanned})


@routes.post("/v1/privacy/subject-access")
@requires(Role.PRIVACY_OFFICER)
async def subject_access_post(request: web.Request) -> web.Response:
    """POST /v1/privacy/subject-access {holder_ref, purpose: "subject_access", case_ref?, cursor?}: who read or
    traced one holder, when and under which case (PIPL Art. 45), newest first.

    The holder reference travels in the body, never in a URL. Entries are the audit entries whose ``subject``
    is the holder's keyed hash (approvals and their refusals, traces and their refusals, holder reads, earlier
    subject-access queries); ``case_ref`` narrows them to one case. Bounded: at most
    ``gateway.privacy.subjects.SCAN_MAX`` trail entries are examined and ``LIMIT`` returned per call; a non-null
    ``next_cursor`` means "ask again with it for older entries". The query itself is audited (``subject_access``,
    with the hash).
    """
    return await _subject_access(request)


@routes.get("/v1/privacy/subject-access")
@requires(Role.PRIVACY_OFFICER)
async def subject_access_get(request: web.Request) -> web.Response:
    """GET /v1/privacy/subject-access: the path the issue names, kept reachable; it reads the SAME JSON body as
    the POST (the holder reference never goes into the query string). Prefer POST: some proxies drop a GET body.
    """
    return await _subject_access(request)
