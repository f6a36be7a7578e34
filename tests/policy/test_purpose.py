"""Purpose limitation, the two-person rule and bounded queries, as pure tables with an explicit ``now``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from policy.purpose import (
    Approval,
    ApprovalInvalidError,
    ApprovalRequiredError,
    CaseRefRequiredError,
    InvalidRangeError,
    OutsideRetentionError,
    PageTooLargeError,
    PurposeError,
    PurposeNotAllowedError,
    RangeTooLongError,
    TraceRequest,
    check_approval_grant,
    check_audit_query,
    check_subject_access,
    check_trace,
    oldest_retained_day,
    trace_days,
)

NOW = datetime(2024, 3, 15, 10, 30, tzinfo=UTC)
FLOOR = oldest_retained_day(NOW, 21)
SUBJECT = "sh_" + "a" * 32
OFFICER = TraceRequest("po-1", "privacy_officer", "epidemic_prevention", "case-0001", None, None, SUBJECT)
INVESTIGATOR = TraceRequest("disp-1", "dispatcher", "epidemic_prevention", "case-0001", None, None, SUBJECT)
APPROVAL = Approval("ap-1", "po-2", "privacy_officer", "disp-1", "case-0001", "epidemic_prevention",
                    NOW + timedelta(hours=1), SUBJECT, FLOOR, NOW)
FOR_OFFICER = replace(APPROVAL, requester_id="po-1")


def test_a_privacy_officer_traces_the_approved_window_by_default() -> None:
    since, until = check_trace(OFFICER, FOR_OFFICER, now=NOW, retention_days=21)
    assert since == datetime(2024, 2, 23, tzinfo=UTC) == FLOOR
    assert until == NOW
    assert len(trace_days(since, until)) == 22


def test_an_approved_investigator_may_trace_a_part_of_the_window() -> None:
    assert check_trace(INVESTIGATOR, APPROVAL, now=NOW, retention_days=21)[1] == NOW
    part = replace(INVESTIGATOR, since=NOW - timedelta(days=2), until=NOW - timedelta(days=1))
    assert check_trace(part, APPROVAL, now=NOW, retention_days=21) == (part.since, part.until)


@pytest.mark.parametrize(
    ("request_", "approval", "error"),
    [
        (replace(OFFICER, purpose="marketing"), FOR_OFFICER, PurposeNotAllowedError),
        (replace(OFFICER, purpose=""), FOR_OFFICER, PurposeNotAllowedError),
        (replace(OFFICER, case_ref=""), FOR_OFFICER, CaseRefRequiredError),
        (replace(OFFICER, case_ref="x"), FOR_OFFICER, CaseRefRequiredError),
        (replace(OFFICER, case_ref="case 1; drop"), FOR_OFFICER, CaseRefRequiredError),
        (replace(OFFICER, requester_role="site_manager"), None, ApprovalRequiredError),
        (replace(OFFICER, requester_role="admin"), None, ApprovalRequiredError),
        (OFFICER, None, ApprovalRequiredError),  # a privacy officer never traces alone
        (OFFICER, replace(FOR_OFFICER, approver_id="po-1"), ApprovalInvalidError),  # nor self-approved
        (INVESTIGATOR, None, ApprovalRequiredError),
        (INVESTIGATOR, replace(APPROVAL, used=True), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, requester_id="disp-2"), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, case_ref="case-0002"), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, subject="sh_" + "b" * 32), ApprovalInvalidError),  # another holder
        (INVESTIGATOR, replace(APPROVAL, subject=""), ApprovalInvalidError),
        (replace(INVESTIGATOR, subject=""), APPROVAL, ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, expires_at=NOW), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, approver_role="supervisor"), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, approver_id="disp-1"), ApprovalInvalidError),
        (replace(INVESTIGATOR, since=FLOOR - timedelta(seconds=1)), APPROVAL, ApprovalInvalidError),  # window
        (replace(INVESTIGATOR, until=NOW + timedelta(minutes=1)), APPROVAL, ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, since=FLOOR - timedelta(days=1)), OutsideRetentionError),
        (replace(INVESTIGATOR, since=NOW, until=NOW - timedelta(hours=1)), APPROVAL, InvalidRangeError),
    ],
)
def test_trace_refusals(request_: TraceRequest, approval: Approval | None, error: type[PurposeError]) -> None:
    with pytest.raises(error) as caught:
        check_trace(request_, approval, now=NOW, retention_days=21)
    assert caught.value.code == error.code


def test_the_oldest_retained_day_is_still_traceable_and_the_day_before_is_not() -> None:
    check_trace(replace(OFFICER, since=FLOOR), FOR_OFFICER, now=NOW, retention_days=21)
    with pytest.raises(OutsideRetentionError):
        check_trace(replace(OFFICER, since=FLOOR - timedelta(seconds=1)),
                    replace(FOR_OFFICER, since=FLOOR - timedelta(days=1)), now=NOW, retention_days=21)


_GRANT: dict[str, object] = {"approver_id": "po-1", "approver_role": "privacy_officer", "requester_id": "disp-1",
                             "requester_role": "dispatcher", "purpose": "epidemic_prevention",
                             "case_ref": "case-0001", "valid_s": 3600, "since": FLOOR, "until": NOW, "now": NOW,
                             "retention_days": 21}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"approver_role": "supervisor"}, ApprovalInvalidError),
        ({"requester_id": "po-1"}, ApprovalInvalidError),
        ({"requester_id": ""}, ApprovalInvalidError),
        ({"requester_role": "site_manager"}, ApprovalInvalidError),
        ({"requester_role": ""}, ApprovalInvalidError),  # no such requester
        ({"purpose": "research"}, PurposeNotAllowedError),
        ({"case_ref": ""}, CaseRefRequiredError),
        ({"valid_s": 10}, InvalidRangeError),
        ({"valid_s": 2 * 86400}, InvalidRangeError),
        ({"since": None}, InvalidRangeError),
        ({"until": None}, InvalidRangeError),
        ({"since": NOW, "until": FLOOR}, InvalidRangeError),
        ({"since": FLOOR - timedelta(seconds=1)}, OutsideRetentionError),
        ({"until": NOW + timedelta(hours=1)}, OutsideRetentionError),
    ],
)
def test_approval_grant_refusals(kwargs: dict[str, object], error: type[PurposeError]) -> None:
    with pytest.raises(error):
        check_approval_grant(**{**_GRANT, **kwargs})  # type: ignore[arg-type]


def test_a_valid_grant_passes_and_returns_its_window() -> None:
    assert check_approval_grant(**_GRANT) == (FLOOR, NOW)  # type: ignore[arg-type]
    officer = {**_GRANT, "requester_id": "po-2", "requester_role": "privacy_officer"}
    assert check_approval_grant(**officer) == (FLOOR, NOW)  # type: ignore[arg-type]


def test_subject_access_has_its_own_purpose() -> None:
    check_subject_access("subject_access", "")
    check_subject_access("subject_access", "c" + "0" * 20)
    with pytest.raises(PurposeNotAllowedError):
        check_subject_access("epidemic_prevention", "")
    with pytest.raises(CaseRefRequiredError):
        check_subject_access("subject_access", "a b")


@pytest.mark.parametrize(
    ("since", "until", "limit", "error"),
    [
        (None, NOW, 10, InvalidRangeError),
        (NOW, None, 10, InvalidRangeError),
        (NOW, NOW - timedelta(seconds=1), 10, InvalidRangeError),
        (NOW - timedelta(days=32), NOW, 10, RangeTooLongError),
        (NOW - timedelta(days=1), NOW, 0, PageTooLargeError),
        (NOW - timedelta(days=1), NOW, 501, PageTooLargeError),
    ],
)
def test_unbounded_audit_queries_are_refused(
    since: datetime | None, until: datetime | None, limit: int, error: type[PurposeError]
) -> None:
    with pytest.raises(error):
        check_audit_query(since, until, limit)


def test_a_bounded_audit_query_passes() -> None:
    check_audit_query(NOW - timedelta(days=31), NOW, 500)
