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
    check_trace,
    oldest_retained_day,
    trace_days,
)

NOW = datetime(2024, 3, 15, 10, 30, tzinfo=UTC)
OFFICER = TraceRequest("po-1", "privacy_officer", "epidemic_prevention", "case-0001", None, None)
INVESTIGATOR = TraceRequest("disp-1", "dispatcher", "epidemic_prevention", "case-0001", None, None)
APPROVAL = Approval("ap-1", "po-1", "privacy_officer", "disp-1", "case-0001", "epidemic_prevention",
                    NOW + timedelta(hours=1))


def test_a_privacy_officer_traces_the_whole_retention_window_by_default() -> None:
    since, until = check_trace(OFFICER, None, now=NOW, retention_days=21)
    assert since == datetime(2024, 2, 23, tzinfo=UTC) == oldest_retained_day(NOW, 21)
    assert until == NOW
    assert len(trace_days(since, until)) == 22


def test_an_approved_investigator_may_trace() -> None:
    assert check_trace(INVESTIGATOR, APPROVAL, now=NOW, retention_days=21)[1] == NOW


@pytest.mark.parametrize(
    ("request_", "approval", "error"),
    [
        (replace(OFFICER, purpose="marketing"), None, PurposeNotAllowedError),
        (replace(OFFICER, purpose=""), None, PurposeNotAllowedError),
        (replace(OFFICER, case_ref=""), None, CaseRefRequiredError),
        (replace(OFFICER, case_ref="x"), None, CaseRefRequiredError),
        (replace(OFFICER, case_ref="case 1; drop"), None, CaseRefRequiredError),
        (replace(OFFICER, requester_role="site_manager"), None, ApprovalRequiredError),
        (replace(OFFICER, requester_role="admin"), None, ApprovalRequiredError),
        (INVESTIGATOR, None, ApprovalRequiredError),
        (INVESTIGATOR, replace(APPROVAL, used=True), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, requester_id="disp-2"), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, case_ref="case-0002"), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, expires_at=NOW), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, approver_role="supervisor"), ApprovalInvalidError),
        (INVESTIGATOR, replace(APPROVAL, approver_id="disp-1"), ApprovalInvalidError),
        (replace(OFFICER, since=NOW - timedelta(days=23)), None, OutsideRetentionError),
        (replace(OFFICER, until=NOW + timedelta(days=1)), None, OutsideRetentionError),
        (replace(OFFICER, since=NOW, until=NOW - timedelta(hours=1)), None, InvalidRangeError),
    ],
)
def test_trace_refusals(request_: TraceRequest, approval: Approval | None, error: type[PurposeError]) -> None:
    with pytest.raises(error) as caught:
        check_trace(request_, approval, now=NOW, retention_days=21)
    assert caught.value.code == error.code


def test_the_oldest_retained_day_is_still_traceable_and_the_day_before_is_not() -> None:
    floor = oldest_retained_day(NOW, 21)
    check_trace(replace(OFFICER, since=floor), None, now=NOW, retention_days=21)
    with pytest.raises(OutsideRetentionError):
        check_trace(replace(OFFICER, since=floor - timedelta(seconds=1)), None, now=NOW, retention_days=21)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"approver_role": "supervisor"}, ApprovalInvalidError),
        ({"requester_id": "po-1"}, ApprovalInvalidError),
        ({"requester_id": ""}, ApprovalInvalidError),
        ({"purpose": "research"}, PurposeNotAllowedError),
        ({"case_ref": ""}, CaseRefRequiredError),
        ({"valid_s": 10}, InvalidRangeError),
        ({"valid_s": 2 * 86400}, InvalidRangeError),
    ],
)
def test_approval_grant_refusals(kwargs: dict[str, object], error: type[PurposeError]) -> None:
    args: dict[str, object] = {"approver_id": "po-1", "approver_role": "privacy_officer", "requester_id": "disp-1",
                               "purpose": "epidemic_prevention", "case_ref": "case-0001", "valid_s": 3600}
    args.update(kwargs)
    with pytest.raises(error):
        check_approval_grant(**args)  # type: ignore[arg-type]


def test_a_valid_grant_passes() -> None:
    check_approval_grant(approver_id="po-1", approver_role="privacy_officer", requester_id="disp-1",
                         purpose="epidemic_prevention", case_ref="case-0001", valid_s=3600)


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
