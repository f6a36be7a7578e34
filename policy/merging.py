"""A dispatcher's merge of two cases about one matter (issue 15): pure, like ``policy.casework``.

The absorbed case ends ``cancelled`` with a ``cancel`` entry whose reason is ``merged into <id>`` (so the
evaluation counts it as cancelled, never twice), and the case that takes it gets a ``merge`` entry naming it, with
no change of state or clock. Nothing else moves: each case keeps its own history, and the gateway adds the
absorbed case's occurrences to the other's.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from policy.case_errors import IllegalTransitionError, InvalidArgumentError, NotPermittedRoleError
from policy.casework import (
    TERMINAL_STATES,
    Action,
    Actor,
    Case,
    CaseState,
    HistoryEntry,
    Role,
    check_now,
    closure_kind_for,
)

__all__ = ["MERGE_ROLES", "merge_cases"]

MERGE_ROLES = frozenset({Role.SHIFT_LEAD, Role.SUPERVISOR})


def merge_cases(absorbed: Case, into: Case, *, actor: Actor, now: datetime) -> tuple[Case, Case]:
    """``(absorbed, into)`` after the merge; the inputs are never modified.

    :raises InvalidArgumentError: the same case, or cases of different jurisdictions.
    :raises IllegalTransitionError: either case is closed or cancelled.
    :raises NotPermittedRoleError: not a dispatcher (shift lead) or supervisor.
    """
    check_now(now)
    if absorbed.case_id == into.case_id:
        raise InvalidArgumentError("a case cannot be merged into itself")
    if absorbed.jurisdiction != into.jurisdiction:
        raise InvalidArgumentError("only cases of the same jurisdiction are merged")
    if absorbed.state in TERMINAL_STATES or into.state in TERMINAL_STATES:
        raise IllegalTransitionError("a closed or cancelled case is not merged")
    if actor.role not in MERGE_ROLES:
        raise NotPermittedRoleError(f"{actor.role} cannot merge cases")
    gone = HistoryEntry(
        now, Action.CANCEL, actor.actor_id, actor.role, absorbed.state, CaseState.CANCELLED,
        absorbed.department, absorbed.level, absorbed.stage_deadline, f"merged into {into.case_id}",
    )  # fmt: skip
    kept = HistoryEntry(
        now, Action.MERGE, actor.actor_id, actor.role, into.state, into.state, into.department, into.level,
        into.stage_deadline, f"absorbed {absorbed.case_id}",
    )  # fmt: skip
    # A cancellation like any other: its closure kind (error) is the rules', as ``apply_transition`` sets it.
    closed = replace(absorbed, state=CaseState.CANCELLED, overdue=False, stage_started_at=now, stage_deadline=None,
                     closure_kind=closure_kind_for(absorbed, Action.CANCEL, now=now),
                     history=(*absorbed.history, gone))  # fmt: skip
    return closed, replace(into, history=(*into.history, kept))
