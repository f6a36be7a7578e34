"""A merge by hand (``policy.merging``): the absorbed case ends as a cancelled duplicate, closure kind ``error``
like every cancellation (issue 15: the closure kind is set by the rules), and the other case only gains an entry."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from policy.casework import Actor, CaseState, ClosureKind, Role
from policy.merging import merge_cases
from tests.policy.test_casework import _case_in, _reported


def test_a_merged_case_ends_cancelled_with_closure_kind_error() -> None:
    absorbed = _case_in(CaseState.DISPATCHED)
    into = replace(_reported(), case_id="c-2")
    now = absorbed.history[-1].at + timedelta(minutes=5)
    gone, kept = merge_cases(absorbed, into, actor=Actor("lead-1", Role.SHIFT_LEAD), now=now)
    assert (gone.state, gone.closure_kind, gone.stage_deadline) == (CaseState.CANCELLED, ClosureKind.ERROR, None)
    assert (gone.history[-1].action.value, gone.history[-1].note) == ("cancel", "merged into c-2")
    assert (kept.state, kept.closure_kind, kept.history[-1].action.value) == (CaseState.REPORTED, None, "merge")
