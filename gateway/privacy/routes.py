"""The privacy officer's API: audit trail query and verification, retention report, record of processing
activities, trace approvals and the contact-tracing query. Every read here is itself audited."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway.appstate import REDIS, RULES, SETTINGS
from gateway.auth import PRINCIPAL, requires
from gateway.errors import BadRequestError, GatewayError, StoreUnavailableError
from gateway.http import json_response, read_json
from gateway.principals import Principal, Role
from gateway.privacy.audit import query_audit, record_access, verify_chain
from gateway.privacy.retention import retention_report
from gateway.privacy.ropa import build_ropa
from gateway.privacy.tracing import consume_approval, grant_approval, load_approval, trace_holder
from policy.purpose import (
    ApprovalInvalidError,
    InvalidRangeError,
    PurposeError,
    TraceRequest,
    check_approval_grant,
    check_audit_query,
    check_trace,
)

__all__ = ["OVERSIGHT", "routes"]

routes = web.RouteTableDef()

OVERSIGHT = "privacy_oversight"  # the purpose of the officer's own reads of the trail and reports
_HOLDER = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the opaque holder reference of the native code
_BODY_LIMIT = 4096


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
    return value.astimezone(UTC)


def _int(raw: str | None, default: int) -> int:
    try:
        return default if raw is None else int(raw)
    except ValueError:
        raise BadRequestError("limit must be an integer") from None


@routes.get("/v1/privacy/audit")
@requires(Role.PRIVACY_OFFICER)
async def audit_query(request: web.Request) -> web.Response:
    """GET /v1/privacy/audit?since=&until=[&principal=&action=&limit=&cursor=]: bounded, paged, oldest first."""
    q = request.query
    since, until = _time(q.get("since"), "since"), _time(q.get("until"), "until")
    limit = _int(q.get("limit"), 100)
    try:
        check_audit_query(since, until, limit)
    except PurposeError as exc:
        raise _refused(exc) from None
    assert since is not None and until is not None
    cursor = q.get("cursor") or None
    if cursor is not None and re.fullmatch(r"\d{1,15}-\d{1,15}", cursor) is None:
        raise _refused(InvalidRangeError("malformed cursor"))
    redis = request.app[REDIS]
    page = await query_audit(redis, since=since, until=until, limit=limit, principal=q.get("principal") or None,
                             action=q.get("action") or None, cursor=cursor)
    await record_access(redis, principal=request[PRINCIPAL], action="audit_query", obj="audit",
                        purpose=OVERSIGHT, now=datetime.now(UTC), result_count=len(page.entries),
                        extra={"window": f"{since.isoformat()}/{until.isoformat()}",
                               "filter": f"principal={q.get('principal', '')};action={q.get('action', '')}"})
    return json_response({"entries": [e.to_json() for e in page.entries], "next_cursor": page.next_cursor})


@routes.get("/v1/privacy/audit/verify")
@requires(Role.PRIVACY_OFFICER)
async def audit_verify(request: web.Request) -> web.Response:
    """GET /v1/privacy/audit/verify[?anchor=SEQ:HASH]: walk the chain; 200 with ok=false when it is broken."""
    anchor = None
    raw = request.query.get("anchor")
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
                                    status_ttl_s=settings.status_ttl_s)
    await record_access(redis, principal=request[PRINCIPAL], action="retention_report", obj="retention",
                        purpose=OVERSIGHT, now=now)
    return json_response(report)


@routes.get("/v1/privacy/ropa")
@requires(Role.PRIVACY_OFFICER, Role.ADMIN)
async def privacy_ropa(request: web.Request) -> web.Response:
    """GET /v1/privacy/ropa: the record of processing activities of this running configuration."""
    app = request.app
    return json_response(build_ropa(app[SETTINGS], app[RULES], app, now=datetime.now(UTC)))


@routes.post("/v1/privacy/approvals")
@requires(Role.PRIVACY_OFFICER)
async def trace_approve(request: web.Request) -> web.Response:
    """POST /v1/privacy/approvals {requester, case_ref, purpose, valid_s}: a single-use approval of one trace."""
    body = await read_json(request, limit=_BODY_LIMIT)
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    officer: Principal = request[PRINCIPAL]
    requester, case_ref, purpose = (str(body.get(k, "")) for k in ("requester", "case_ref", "purpose"))
    valid_s = body.get("valid_s", 3600)
    if not isinstance(valid_s, int) or isinstance(valid_s, bool):
        raise BadRequestError("valid_s must be an integer")
    try:
        check_approval_grant(approver_id=officer.principal_id, approver_role=officer.role.value,
                             requester_id=requester, purpose=purpose, case_ref=case_ref, valid_s=valid_s)
    except PurposeError as exc:
        raise _refused(exc) from None
    now = datetime.now(UTC)
    redis = request.app[REDIS]
    approval = await grant_approval(redis, approver_id=officer.principal_id, approver_role=officer.role.value,
                                    requester_id=requester, case_ref=case_ref, purpose=purpose,
                                    expires_at=now + timedelta(seconds=valid_s))
    await record_access(redis, principal=officer, action="trace_approve", obj=f"approval:{approval.approval_id}",
                        purpose=purpose, now=now, case_ref=case_ref, extra={"requester": requester})
    return json_response({"approval_id": approval.approval_id, "requester": requester, "case_ref": case_ref,
                          "expires_at": approval.expires_at.isoformat()}, status=201)


@routes.post("/v1/privacy/trace")
@requires(Role.PRIVACY_OFFICER, Role.DISPATCHER, Role.SUPERVISOR)
async def trace(request: web.Request) -> web.Response:
    """POST /v1/privacy/trace {holder_ref, purpose, case_ref, since?, until?, approval_id?}: visits of one holder.

    A POST so the holder reference never appears in a URL or an access log. Refusals are audited too.
    """
    body = await read_json(request, limit=_BODY_LIMIT)
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    holder = body.get("holder_ref")
    if not isinstance(holder, str) or _HOLDER.fullmatch(holder) is None:
        raise BadRequestError("holder_ref must be 1-64 of [A-Za-z0-9._-]")
    principal: Principal = request[PRINCIPAL]
    purpose, case_ref = str(body.get("purpose", "")), str(body.get("case_ref", ""))
    approval_id = str(body.get("approval_id") or "")
    redis = request.app[REDIS]
    retention_days = request.app[SETTINGS].retention_days
    now = datetime.now(UTC)
    try:
        ask = TraceRequest(principal.principal_id, principal.role.value, purpose, case_ref,
                           _time(body.get("since"), "since"), _time(body.get("until"), "until"))
        approval = await load_approval(redis, approval_id) if approval_id else None
        if approval_id and approval is None:
            raise ApprovalInvalidError("no usable approval")  # unknown looks like foreign or used
        since, until = check_trace(ask, approval, now=now, retention_days=retention_days)
        if approval is not None and not await consume_approval(redis, approval.approval_id):
            raise ApprovalInvalidError("no usable approval")
    except (PurposeError, GatewayError) as exc:
        code = exc.code if isinstance(exc, PurposeError) else exc.instance_code
        with contextlib.suppress(StoreUnavailableError):  # the refusal stands either way
            await record_access(redis, principal=principal, action="contact_trace_refused",
                                obj=f"trace:{case_ref[:64]}", purpose=purpose[:64], now=now, case_ref=case_ref[:64],
                                extra={"outcome": code})
        raise _refused(exc) if isinstance(exc, PurposeError) else exc from None
    result = await trace_holder(redis, holder, since=since, until=until)
    unlinkable = [d for d, s in result.days.items() if s == "unlinkable"]
    # Audited before the answer leaves: if the trail cannot be written, nothing is disclosed.
    await record_access(redis, principal=principal, action="contact_trace", obj=f"trace:{case_ref}",
                        purpose=purpose, now=now, case_ref=case_ref, result_count=len(result.visits),
                        extra={"window": f"{since.isoformat()}/{until.isoformat()}",
                               "days": str(len(result.days)), "unlinkable_days": str(len(unlinkable)),
                               "approval": approval.approval_id if approval else "",
                               "approver": approval.approver_id if approval else ""})
    return json_response({**result.to_json(), "since": since.isoformat(), "until": until.isoformat()})
