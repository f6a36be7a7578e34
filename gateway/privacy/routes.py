"""The privacy officer's API: audit trail query and verification, retention report, record of processing
activities, trace approvals, the contact-tracing query and subject access. Every read here is itself audited."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta

from aiohttp import web

from crypto.subject import SubjectHasher
from gateway.appstate import REDIS, RULES, SETTINGS
from gateway.auth import PRINCIPAL, requires
from gateway.dispatch.store import valid_case_id
from gateway.errors import BadRequestError, GatewayError, StoreUnavailableError
from gateway.http import INSTANT_MAX, INSTANT_MIN, json_response, query_params, read_json
from gateway.principals import Principal, Role
from gateway.privacy.audit import query_audit, record_access, record_refusal, verify_chain
from gateway.privacy.retention import retention_report
from gateway.privacy.ropa import build_ropa
from gateway.privacy.subjects import hasher_for, subject_access
from gateway.privacy.tracing import (
    active_principal,
    case_in_trace_scope,
    consume_approval,
    grant_approval,
    load_approval,
    place_filter,
    trace_holder,
)
from gateway.trust.registry import Registry
from policy.purpose import (
    PURPOSE,
    SUBJECT_ACCESS,
    ApprovalInvalidError,
    ApprovalRequiredError,
    InvalidRangeError,
    PurposeError,
    TraceRequest,
    check_approval_grant,
    check_audit_query,
    check_subject_access,
    check_trace,
)

__all__ = ["OVERSIGHT", "routes"]

routes = web.RouteTableDef()

OVERSIGHT = "privacy_oversight"  # the purpose of the officer's own reads of the trail and reports
_HOLDER = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the opaque holder reference of the native code
_BODY_LIMIT = 4096
_ACTION = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _refused(exc: PurposeError) -> GatewayError:
    return GatewayError(str(exc), code=exc.code)


def _time(raw: object, name: str) -> datetime | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise _refused(InvalidRangeError(f"{name} must be an ISO 8601 time"))
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _refused(InvalidRangeError(f"{name} must be an ISO 8601 time")) from None
    if value.tzinfo is None:
        raise _refused(InvalidRangeError(f"{name} needs a time zone"))
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC
        raise BadRequestError(f"{name} out of range") from None
    # Issue 15: a time no window arithmetic can overflow (gateway.http.INSTANT_MIN/MAX), else 400, never a 500.
    if not INSTANT_MIN <= value < INSTANT_MAX:
        raise BadRequestError(f"{name} must lie in [{INSTANT_MIN.year}, {INSTANT_MAX.year})")
    return value


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
    limit = _int(q.get("limit"), 100)
    redis = request.app[REDIS]
    try:
        check_audit_query(since, until, limit)
    except PurposeError as exc:
        await record_refusal(redis, principal=request[PRINCIPAL], action="audit_query_refused", obj="audit",
                             purpose=OVERSIGHT, code=exc.code, now=datetime.now(UTC))
        raise _refused(exc) from None
    assert since is not None and until is not None
    cursor = q.get("cursor") or None
    if cursor is not None and re.fullmatch(r"\d{1,15}-\d{1,15}", cursor) is None:
        raise _refused(InvalidRangeError("malformed cursor"))
    page = await query_audit(redis, since=since, until=until, limit=limit, principal=q.get("principal") or None,
                             action=q.get("action") or None, cursor=cursor)
    await record_access(redis, principal=request[PRINCIPAL], action="audit_query", obj="audit",
                        purpose=OVERSIGHT, now=datetime.now(UTC), result_count=len(page.entries),
                        extra={"window": f"{since.isoformat()}/{until.isoformat()}",
                               **await _filters(request, q.get("principal") or "", q.get("action") or "")})
    return json_response({"entries": [e.to_json() for e in page.entries], "next_cursor": page.next_cursor})


async def _filters(request: web.Request, principal: str, action: str) -> dict[str, str]:
    """The query's filters as audit fields: a filter is typed by the caller, so it may be anything, a holder
    reference included; a principal filter is kept as given only if that principal exists, else as its keyed
    hash, and an action filter only if it is action-shaped."""
    out = {"filter_action": action if _ACTION.fullmatch(action) else ("" if not action else "invalid")}
    if principal and await Registry(request.app[REDIS]).principal_exists(principal):
        out["filter_principal"] = principal
    elif principal:
        secret = request.app[SETTINGS].secret
        assert secret is not None
        out["filter_subject"] = SubjectHasher(secret.reveal()).of(principal)
    return out


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
    redis = request.app[REDIS]
    report = await verify_chain(redis, anchor=anchor)
    await record_access(redis, principal=request[PRINCIPAL], action="audit_verify", obj="audit",
                        purpose=OVERSIGHT, now=datetime.now(UTC), result_count=report.count,
                        extra={"outcome": "ok" if report.ok else "broken"})
    return json_response(report.to_json())


@routes.get("/v1/privacy/retention")
@requires(Role.PRIVACY_OFFICER, Role.ADMIN)
async def privacy_retention(request: web.Request) -> web.Response:
    """GET /v1/privacy/retention: per data class what is stored, oldest record, expiry, expired days."""
    settings = request.app[SETTINGS]
    redis = request.app[REDIS]
    now = datetime.now(UTC)
    report = await retention_report(redis, now=now, retention_days=settings.retention_days,
                                    status_ttl_s=settings.status_ttl_s,
                                    dcc_replay_window_s=settings.dcc_replay_window_s,
                                    grace_s=settings.retention_trim_s)
    await record_access(redis, principal=request[PRINCIPAL], action="retention_report", obj="retention",
                        purpose=OVERSIGHT, now=now)
    return json_response(report)


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


def _audited_purpose(purpose: str) -> str:
    """A refused request's purpose as the trail may hold it: a known purpose, or a marker (free text could carry
    a holder reference into a trail that is kept for years)."""
    return purpose if purpose in (PURPOSE, SUBJECT_ACCESS, OVERSIGHT) else "unlisted"


def _audited_case(case_ref: str) -> str:
    """The case reference as the trail may hold it: a case id, or nothing (free text could carry a holder)."""
    return case_ref if valid_case_id(case_ref) else ""


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
    officer: Principal = request[PRINCIPAL]
    holder = _holder(body)
    requester_id, case_ref, purpose = (str(body.get(k, "")) for k in ("requester", "case_ref", "purpose"))
    valid_s = body.get("valid_s", 3600)
    if not isinstance(valid_s, int) or isinstance(valid_s, bool):
        raise BadRequestError("valid_s must be an integer")
    redis = request.app[REDIS]
    settings = request.app[SETTINGS]
    subject = hasher_for(settings).of(holder)
    now = datetime.now(UTC)
    requester: Principal | None = None
    try:
        window = (_time(body.get("since"), "since"), _time(body.get("until"), "until"))
        requester = await active_principal(redis, requester_id, now) if requester_id else None
        since, until = check_approval_grant(
            approver_id=officer.principal_id, approver_role=officer.role.value, requester_id=requester_id,
            requester_role=requester.role.value if requester else "", purpose=purpose, case_ref=case_ref,
            valid_s=valid_s, since=window[0], until=window[1], now=now, retention_days=settings.retention_days)
        if requester is None:  # check_approval_grant refused an empty role already; this keeps mypy informed
            raise ApprovalInvalidError("the requester's role may not trace")
        if not await case_in_trace_scope(redis, requester, case_ref):
            raise ApprovalInvalidError("no such case in the requester's jurisdiction")
    except PurposeError as exc:
        with contextlib.suppress(StoreUnavailableError):  # the refusal stands either way
            await record_access(redis, principal=officer, action="trace_approve_refused", obj="approval",
                                purpose=_audited_purpose(purpose), now=now, case_ref=_audited_case(case_ref),
                                extra={"outcome": exc.code, "subject": subject,
                                       # a registered id only: free text could carry a holder reference
                                       "requester": requester.principal_id if requester else ""})
        raise _refused(exc) from None
    approval = await grant_approval(redis, approver_id=officer.principal_id, approver_role=officer.role.value,
                                    requester_id=requester_id, case_ref=case_ref, purpose=purpose,
                                    expires_at=now + timedelta(seconds=valid_s), subject=subject, since=since,
                                    until=until)
    await record_access(redis, principal=officer, action="trace_approve", obj=f"approval:{approval.approval_id}",
                        purpose=purpose, now=now, case_ref=case_ref,
                        extra={"requester": requester_id, "subject": subject,
                               "window": f"{since.isoformat()}/{until.isoformat()}"})
    return json_response({"approval_id": approval.approval_id, "requester": requester_id, "case_ref": case_ref,
                          "subject": subject, "since": since.isoformat(), "until": until.isoformat(),
                          "expires_at": approval.expires_at.isoformat()}, status=201)


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
