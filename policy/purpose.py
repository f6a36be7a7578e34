"""Purpose limitation and the two-person rule for reads of personal data (pure: time arrives as ``now``).

The seed regulation limits the personal information collected at verification to epidemic prevention and
control (PIPL Art. 6; GDPR Art. 5(1)(b)); a contact-tracing query must name that purpose and the case it serves,
and stay inside the retention window, because outside it the day keys are gone and nothing can be linked.

    PurposeError ("purpose_violation")
    ├── PurposeNotAllowedError ("purpose_not_allowed")   any purpose other than epidemic_prevention
    ├── CaseRefRequiredError ("case_ref_required")       missing or malformed case reference
    ├── ApprovalRequiredError ("approval_required")      no approval presented (every trace needs one)
    ├── ApprovalInvalidError ("approval_invalid")        unknown, foreign, expired, used, self-approved, or not
    │                                                    matching the trace's requester, case, holder or window
    │                                                    (one answer); a grant for an unknown requester or case
    ├── OutsideRetentionError ("outside_retention")      window reaches past the retention period or into the future
    ├── InvalidRangeError ("invalid_range")              missing bound, or since after until
    ├── RangeTooLongError ("range_too_long")             longer than a query may span
    └── PageTooLargeError ("page_too_large")             a page size above the cap (or below 1)
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import ClassVar

from policy.errors import PolicyError

__all__ = [
    "APPROVAL_MAX_S",
    "AUDIT_MAX_RANGE",
    "AUDIT_PAGE_MAX",
    "PRIVACY_OFFICER",
    "PURPOSE",
    "SUBJECT_ACCESS",
    "TRACE_PAGE_MAX",
    "TRACE_REQUESTER_ROLES",
    "Approval",
    "ApprovalInvalidError",
    "ApprovalRequiredError",
    "CaseRefRequiredError",
    "InvalidRangeError",
    "OutsideRetentionError",
    "PageTooLargeError",
    "Purpose",
    "PurposeError",
    "PurposeNotAllowedError",
    "RangeTooLongError",
    "TraceRequest",
    "check_approval_grant",
    "check_audit_query",
    "check_subject_access",
    "check_trace",
    "oldest_retained_day",
    "trace_days",
    "valid_case_ref",
]

APPROVAL_MAX_S = 24 * 3600  # an approval covers one investigation step, not a standing licence
AUDIT_MAX_RANGE = timedelta(days=31)
AUDIT_PAGE_MAX = 500
TRACE_PAGE_MAX = 1000
_CASE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{2,63}")

# Who may ask for a trace at all; every one of them, privacy officers included, needs the approval of ANOTHER
# privacy officer (two-person rule: no one traces alone).
PRIVACY_OFFICER = "privacy_officer"
TRACE_REQUESTER_ROLES: frozenset[str] = frozenset({PRIVACY_OFFICER, "dispatcher", "supervisor"})


class Purpose(StrEnum):
    """The closed set of purposes personal data may be processed for (one, by regulation)."""

    EPIDEMIC_PREVENTION = "epidemic_prevention"


# Purpose limitation (seed regulation; PIPL Art. 6): every scan record, intake event and audited read says what
# it may be used for; this is the only value there is.
PURPOSE = Purpose.EPIDEMIC_PREVENTION.value

# The purpose of a privacy officer's answer to a data subject's request "who read my data" (PIPL Art. 45): it
# reads the trail only, never the scan log, so it is not epidemic prevention.
SUBJECT_ACCESS = "subject_access"


class PurposeError(PolicyError):
    code: ClassVar[str] = "purpose_violation"


class PurposeNotAllowedError(PurposeError):
    code = "purpose_not_allowed"


class CaseRefRequiredError(PurposeError):
    code = "case_ref_required"


class ApprovalRequiredError(PurposeError):
    code = "approval_required"


class ApprovalInvalidError(PurposeError):
    code = "approval_invalid"


class OutsideRetentionError(PurposeError):
    code = "outside_retention"


class InvalidRangeError(PurposeError):
    code = "invalid_range"


class RangeTooLongError(PurposeError):
    code = "range_too_long"


class PageTooLargeError(PurposeError):
    code = "page_too_large"


@dataclass(frozen=True, slots=True)
class Approval:
    """A privacy officer's recorded consent to one requester's one trace of one holder, for one case and window.

    ``subject`` is the holder's keyed hash (``crypto.subject.SubjectHasher``), never the holder reference.
    """

    approval_id: str
    approver_id: str
    approver_role: str
    requester_id: str
    case_ref: str
    purpose: str
    expires_at: datetime
    subject: str
    since: datetime
    until: datetime
    used: bool = False


@dataclass(frozen=True, slots=True)
class TraceRequest:
    requester_id: str
    requester_role: str
    purpose: str
    case_ref: str
    since: datetime | None
    until: datetime | None
    subject: str = ""  # the traced holder's keyed hash


def valid_case_ref(case_ref: str) -> bool:
    return _CASE_REF.fullmatch(case_ref) is not None


def _check_purpose(purpose: str, case_ref: str) -> None:
    if purpose != Purpose.EPIDEMIC_PREVENTION.value:
        raise PurposeNotAllowedError("personal data is processed for epidemic prevention only")
    if not valid_case_ref(case_ref):
        raise CaseRefRequiredError("a case reference (3-64 of [A-Za-z0-9._:/-]) is required")


def oldest_retained_day(now: datetime, retention_days: int) -> datetime:
    """Midnight UTC of the oldest day whose partition and day key still exist (they expire at day end + R)."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=retention_days)


def trace_days(since: datetime, until: datetime) -> list[str]:
    """The UTC day partitions (YYYYMMDD) a window touches, oldest first."""
    day = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    while day <= until:
        out.append(day.strftime("%Y%m%d"))
        day += timedelta(days=1)
    return out


def check_trace(
    request: TraceRequest, approval: Approval | None, *, now: datetime, retention_days: int
) -> tuple[datetime, datetime]:
    """Admit a contact-tracing query or raise; returns the window (default: the approval's window).

    Every requester, a privacy officer too, presents an approval by another privacy officer naming them, this
    case, this holder (by keyed hash) and a window that holds the trace's window.

    :raises PurposeError: a subclass whose ``code`` says why (see the module docstring).
    """
    if request.requester_role not in TRACE_REQUESTER_ROLES:
        raise ApprovalRequiredError("only a privacy officer, or an approved investigator, may trace")
    _check_purpose(request.purpose, request.case_ref)
    if approval is None:
        raise ApprovalRequiredError("another privacy officer's approval is required (two-person rule)")
    _check_approval_use(approval, request, now)
    since = request.since or approval.since
    until = request.until or min(approval.until, now)
    if since > until:
        raise InvalidRangeError("since is after until")
    if since < approval.since or until > approval.until:
        raise ApprovalInvalidError("no usable approval")  # outside the approved window: same answer as foreign
    floor = oldest_retained_day(now, retention_days)
    if since < floor or until > now + timedelta(minutes=5):
        raise OutsideRetentionError("the window reaches outside the retention period; older days are unlinkable")
    return since, until


def _check_approval_use(approval: Approval, request: TraceRequest, now: datetime) -> None:
    # One answer for every failure: a requester learns nothing about approvals issued to others.
    if (
        approval.used
        or approval.approver_role != PRIVACY_OFFICER
        or approval.approver_id == request.requester_id
        or approval.requester_id != request.requester_id
        or approval.case_ref != request.case_ref
        or approval.purpose != request.purpose
        or not approval.subject
        or not hmac.compare_digest(approval.subject.encode(), request.subject.encode())
        or now >= approval.expires_at
    ):
        raise ApprovalInvalidError("no usable approval")


def check_approval_grant(
    *, approver_id: str, approver_role: str, requester_id: str, requester_role: str, purpose: str, case_ref: str,
    valid_s: int, since: datetime | None, until: datetime | None, now: datetime, retention_days: int,
) -> tuple[datetime, datetime]:
    """A privacy officer may approve another principal's trace of one holder for one case and one window inside
    retention, for at most a day; returns the window. Whether the requester exists and the case exists and is in
    the requester's scope is the gateway's check (it needs the store).

    :raises PurposeError: wrong purpose, missing case ref, self-approval, a requester role that may not trace, a
        missing or reversed window, a window outside retention, or an out-of-range validity.
    """
    _check_purpose(purpose, case_ref)
    if approver_role != PRIVACY_OFFICER:
        raise ApprovalInvalidError("only a privacy officer approves")
    if not requester_id or requester_id == approver_id:
        raise ApprovalInvalidError("the two-person rule needs two different people")
    if requester_role not in TRACE_REQUESTER_ROLES:
        raise ApprovalInvalidError("the requester's role may not trace")
    if not 60 <= valid_s <= APPROVAL_MAX_S:
        raise InvalidRangeError(f"validity must be 60..{APPROVAL_MAX_S} seconds")
    if since is None or until is None:
        raise InvalidRangeError("since and until are both required")
    if since > until:
        raise InvalidRangeError("since is after until")
    if since < oldest_retained_day(now, retention_days) or until > now + timedelta(minutes=5):
        raise OutsideRetentionError("the window reaches outside the retention period; older days are unlinkable")
    return since, until


def check_subject_access(purpose: str, case_ref: str) -> None:
    """A subject-access query names its own purpose; an optional case filter has the case reference's shape.

    :raises PurposeError: ``purpose_not_allowed`` or ``case_ref_required``.
    """
    if purpose != SUBJECT_ACCESS:
        raise PurposeNotAllowedError(f"a subject-access query has the purpose {SUBJECT_ACCESS}")
    if case_ref and not valid_case_ref(case_ref):
        raise CaseRefRequiredError("a case reference is 3-64 of [A-Za-z0-9._:/-]")


def check_audit_query(
    since: datetime | None, until: datetime | None, limit: int, *, max_range: timedelta = AUDIT_MAX_RANGE,
    page_max: int = AUDIT_PAGE_MAX,
) -> None:
    """Audit reads are bounded: both ends given, at most ``max_range`` apart, at most ``page_max`` per page.

    :raises PurposeError: ``invalid_range``, ``range_too_long`` or ``page_too_large``.
    """
    if since is None or until is None:
        raise InvalidRangeError("since and until are both required")
    if since > until:
        raise InvalidRangeError("since is after until")
    if until - since > max_range:
        raise RangeTooLongError(f"at most {max_range.days} days per query")
    if not 1 <= limit <= page_max:
        raise PageTooLargeError(f"limit must be 1..{page_max}")
