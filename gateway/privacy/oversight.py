"""What a privacy officer does, once the request is parsed: the audit trail's query and verification, the retention
report, and the grant of a trace approval. Shared by the JSON routes (``routes.py``) and the web console
(``gateway/console/``), so both check the same rules (``policy.purpose``) and leave the same audit entries: every
read here is itself audited, and so is every refusal.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from crypto.subject import SubjectHasher
from gateway.dispatch.store import valid_case_id
from gateway.errors import BadRequestError, GatewayError, StoreUnavailableError
from gateway.http import INSTANT_MAX, INSTANT_MIN
from gateway.principals import Principal
from gateway.privacy.audit import AuditPage, ChainReport, query_audit, record_access, record_refusal, verify_chain
from gateway.privacy.retention import retention_report
from gateway.privacy.subjects import hasher_for
from gateway.privacy.tracing import active_principal, case_in_trace_scope, grant_approval
from gateway.settings import Settings
from gateway.trust.registry import Registry
from policy.purpose import (
    PURPOSE,
    SUBJECT_ACCESS,
    ApprovalInvalidError,
    InvalidRangeError,
    PurposeError,
    check_approval_grant,
    check_audit_query,
)

__all__ = [
    "HOLDER",
    "OVERSIGHT",
    "audit_page",
    "audited_case",
    "audited_purpose",
    "grant",
    "parse_time",
    "refused",
    "retention",
    "verify",
]

OVERSIGHT = "privacy_oversight"  # the purpose of the officer's own reads of the trail and reports
_ACTION = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CURSOR = re.compile(r"\d{1,15}-\d{1,15}")
HOLDER = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the opaque holder reference of the native code


def refused(exc: PurposeError) -> GatewayError:
    return GatewayError(str(exc), code=exc.code)


def parse_time(raw: object, name: str) -> datetime | None:
    """An ISO 8601 instant with a zone, as UTC; ``None`` for nothing. :raises GatewayError: (invalid_range, 400)"""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise refused(InvalidRangeError(f"{name} must be an ISO 8601 time"))
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise refused(InvalidRangeError(f"{name} must be an ISO 8601 time")) from None
    if value.tzinfo is None:
        raise refused(InvalidRangeError(f"{name} needs a time zone"))
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC
        raise BadRequestError(f"{name} out of range") from None
    # Issue 15: a time no window arithmetic can overflow (gateway.http.INSTANT_MIN/MAX), else 400, never a 500.
    if not INSTANT_MIN <= value < INSTANT_MAX:
        raise BadRequestError(f"{name} must lie in [{INSTANT_MIN.year}, {INSTANT_MAX.year})")
    return value


def audited_purpose(purpose: str) -> str:
    """A refused request's purpose as the trail may hold it: a known purpose, or a marker (free text could carry
    a holder reference into a trail that is kept for years)."""
    return purpose if purpose in (PURPOSE, SUBJECT_ACCESS, OVERSIGHT) else "unlisted"


def audited_case(case_ref: str) -> str:
    """The case reference as the trail may hold it: a case id, or nothing (free text could carry a holder)."""
    return case_ref if valid_case_id(case_ref) else ""


async def _filters(redis: Redis, settings: Settings, principal: str, action: str) -> dict[str, str]:
    """The query's filters as audit fields: a filter is typed by the caller, so it may be anything, a holder
    reference included; a principal filter is kept as given only if that principal exists, else as its keyed
    hash, and an action filter only if it is action-shaped."""
    out = {"filter_action": action if _ACTION.fullmatch(action) else ("" if not action else "invalid")}
    if principal and await Registry(redis).principal_exists(principal):
        out["filter_principal"] = principal
    elif principal:
        assert settings.secret is not None
        out["filter_subject"] = SubjectHasher(settings.secret.reveal()).of(principal)
    return out


async def audit_page(
    redis: Redis, settings: Settings, officer: Principal, *, since: datetime | None, until: datetime | None,
    limit: int, principal: str = "", action: str = "", cursor: str | None = None,
) -> AuditPage:
    """One page of the trail (oldest first), audited with its window and filters; a refused query is audited too."""
    try:
        check_audit_query(since, until, limit)
    except PurposeError as exc:
        await record_refusal(redis, principal=officer, action="audit_query_refused", obj="audit",
                             purpose=OVERSIGHT, code=exc.code, now=datetime.now(UTC))  # fmt: skip
        raise refused(exc) from None
    assert since is not None and until is not None
    if cursor is not None and _CURSOR.fullmatch(cursor) is None:
        raise refused(InvalidRangeError("malformed cursor"))
    page = await query_audit(redis, since=since, until=until, limit=limit, principal=principal or None,
                             action=action or None, cursor=cursor)  # fmt: skip
    await record_access(redis, principal=officer, action="audit_query", obj="audit", purpose=OVERSIGHT,
                        now=datetime.now(UTC), result_count=len(page.entries),
                        extra={"window": f"{since.isoformat()}/{until.isoformat()}",
                               **await _filters(redis, settings, principal, action)})  # fmt: skip
    return page


async def verify(redis: Redis, officer: Principal, anchor: tuple[int, str] | None = None) -> ChainReport:
    """Walk the chain; the walk and its outcome are audited."""
    report = await verify_chain(redis, anchor=anchor)
    await record_access(redis, principal=officer, action="audit_verify", obj="audit", purpose=OVERSIGHT,
                        now=datetime.now(UTC), result_count=report.count,
                        extra={"outcome": "ok" if report.ok else "broken"})  # fmt: skip
    return report


async def retention(redis: Redis, settings: Settings, officer: Principal) -> dict[str, Any]:
    """Per data class what is stored, the oldest record, the expiry and the expired days; audited."""
    now = datetime.now(UTC)
    report = await retention_report(redis, now=now, retention_days=settings.retention_days,
                                    status_ttl_s=settings.status_ttl_s,
                                    dcc_replay_window_s=settings.dcc_replay_window_s,
                                    grace_s=settings.retention_trim_s)  # fmt: skip
    await record_access(redis, principal=officer, action="retention_report", obj="retention", purpose=OVERSIGHT,
                        now=now)  # fmt: skip
    return report


async def grant(
    redis: Redis, settings: Settings, officer: Principal, *, holder: str, requester_id: str, case_ref: str,
    purpose: str, since_raw: object, until_raw: object, valid_s: int,
) -> dict[str, str]:
    """A single-use approval of one trace by another officer (two-person rule), audited; a refused grant is
    audited (``trace_approve_refused``) and raised with its stable code."""
    if HOLDER.fullmatch(holder) is None:
        raise BadRequestError("holder_ref must be 1-64 of [A-Za-z0-9._-]")
    subject = hasher_for(settings).of(holder)
    now = datetime.now(UTC)
    requester: Principal | None = None
    try:
        window = (parse_time(since_raw, "since"), parse_time(until_raw, "until"))
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
                                purpose=audited_purpose(purpose), now=now, case_ref=audited_case(case_ref),
                                extra={"outcome": exc.code, "subject": subject,
                                       # a registered id only: free text could carry a holder reference
                                       "requester": requester.principal_id if requester else ""})
        raise refused(exc) from None
    approval = await grant_approval(redis, approver_id=officer.principal_id, approver_role=officer.role.value,
                                    requester_id=requester_id, case_ref=case_ref, purpose=purpose,
                                    expires_at=now + timedelta(seconds=valid_s), subject=subject, since=since,
                                    until=until)
    await record_access(redis, principal=officer, action="trace_approve", obj=f"approval:{approval.approval_id}",
                        purpose=purpose, now=now, case_ref=case_ref,
                        extra={"requester": requester_id, "subject": subject,
                               "window": f"{since.isoformat()}/{until.isoformat()}"})
    return {"approval_id": approval.approval_id, "requester": requester_id, "case_ref": case_ref,
            "subject": subject, "since": since.isoformat(), "until": until.isoformat(),
            "expires_at": approval.expires_at.isoformat()}
