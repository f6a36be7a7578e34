"""Case lifecycle: the pure state machine of the dispatch core.

The closed loop of digital urban management (GB/T 30428: collect, file, dispatch, handle, feed back,
check and close, evaluate) as a table of legal ``(state, action) -> state`` moves, each admitting a fixed
set of roles (docs/dispatch.md "States, roles and transitions"). ``apply_transition`` returns a *new* ``Case``
with the move appended to its history, or raises a ``TransitionError`` and changes nothing. Durations
come from a ``StageDeadlines`` (``policy.deadlines.DeadlineTable``); overdue flags and escalation live in
``policy.deadlines``. The helpers at the end turn a case into the ``dict[str, str]`` of a Redis hash and
each history entry into the fields of one stream entry, and back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from policy.case_errors import (
    CaseUnroutedError,
    ExtensionAlreadyUsedError,
    IllegalTransitionError,
    InvalidArgumentError,
    InvalidCaseRecordError,
    InvalidJurisdictionError,
    InvalidTimeError,
    NoteTooLongError,
    NotPermittedRoleError,
    ReasonRequiredError,
    SupervisorRequiredError,
    WrongDepartmentError,
)
from policy.masking import mask_personal
from policy.routing import UNROUTED, CentreLevel, EventClass, initial_level, is_urgent, parse_jurisdiction

__all__ = [
    "NOTE_MAX_CHARS",
    "REASON_REQUIRED",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Action",
    "Actor",
    "Case",
    "CaseState",
    "ClosureKind",
    "HistoryEntry",
    "Role",
    "StageDeadlines",
    "Transition",
    "apply_transition",
    "case_from_fields",
    "case_to_fields",
    "check_now",
    "closure_kind_for",
    "entry_from_fields",
    "entry_to_fields",
    "new_case",
    "ran_late",
]


class CaseState(StrEnum):
    REPORTED = "reported"
    ACCEPTED = "accepted"
    FILED = "filed"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    # A state rather than a flag: the approved extension changes who waits for what (the queue filter
    # ``state=postponed``) and its deadline; ``Case.extension_used`` still records that it was spent.
    POSTPONED = "postponed"
    HUNG = "hung"
    FED_BACK = "fed_back"
    CHECKING = "checking"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    RETURNED = "returned"


TERMINAL_STATES: frozenset[CaseState] = frozenset({CaseState.CLOSED, CaseState.CANCELLED})


class Role(StrEnum):
    SOURCE = "source"  # site manager or the scan path that raised the event
    INTAKE_OPERATOR = "intake_operator"
    SHIFT_LEAD = "shift_lead"  # the dispatcher of the command centre
    DEPARTMENT = "department"  # the handler of the responsible department
    SUPERVISOR = "supervisor"
    SYSTEM = "system"  # automatic intake, overdue flags and escalation


class Action(StrEnum):
    REPORT = "report"  # creation of the case (``new_case``), history only
    ACCEPT = "accept"
    CANCEL = "cancel"
    FILE = "file"
    DISPATCH = "dispatch"
    START = "start"
    RETURN = "return"
    POSTPONE = "postpone"
    HANG = "hang"
    FEED_BACK = "feed_back"
    REQUEST_CHECK = "request_check"
    CLOSE = "close"
    REWORK = "rework"
    FLAG_OVERDUE = "flag_overdue"  # ``policy.deadlines``, no state change
    ESCALATE = "escalate"  # ``policy.deadlines``, no state change
    ROUTE = "route"  # ``policy.unrouted``: a city dispatcher routes an unrouted case by hand, no state change
    MERGE = "merge"  # ``policy.merging``: the case absorbed another (no state change); never a transition


class ClosureKind(StrEnum):
    """How a case ended, set by the rules (``closure_kind_for``), never chosen by the closer."""

    NORMAL = "normal"
    OVERDUE = "overdue"
    ERROR = "error"
    SPECIAL = "special"


NOTE_MAX_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an opaque principal id, the role it acts in, and for handlers the department."""

    actor_id: str
    role: Role
    department: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One recorded step; ``deadline`` is that of the stage being left, kept for on-time evaluation."""

    at: datetime
    action: Action
    actor_id: str
    role: Role
    from_state: CaseState
    to_state: CaseState
    department: str
    level: CentreLevel
    deadline: datetime | None = None
    note: str | None = None
    # Set by the case store when the entry had a note whose text is past the scan-log retention (never stored).
    note_expired: bool = False


@dataclass(frozen=True, slots=True)
class Case:
    """A case: identity, routing, the current stage and its clock, counters, and the full history."""

    case_id: str
    event_class: EventClass
    urgent: bool
    place_id: str
    jurisdiction: tuple[str, ...]
    department: str
    state: CaseState
    level: CentreLevel
    created_at: datetime
    stage_started_at: datetime
    stage_deadline: datetime | None = None
    overdue: bool = False
    escalation_count: int = 0
    extension_used: bool = False
    rework_count: int = 0
    return_count: int = 0
    closure_kind: ClosureKind | None = None
    history: tuple[HistoryEntry, ...] = ()
    # When the source says it happened (a report's ``time``); ``created_at`` is when the gateway learnt of it, the
    # instant every clock and every evaluation window counts from (issue 15 "time is honest").
    occurred_at: datetime | None = None


class StageDeadlines(Protocol):
    """Source of stage deadlines (``policy.deadlines.DeadlineTable``)."""

    def stage_deadline(self, case: Case, *, entered_at: datetime) -> datetime | None:
        """Deadline of ``case.state`` entered at ``entered_at`` (``case.stage_deadline`` is the old one)."""
        ...


@dataclass(frozen=True, slots=True)
class Transition:
    source: CaseState
    action: Action
    target: CaseState
    roles: frozenset[Role]


def _t(source: CaseState, action: Action, target: CaseState, *roles: Role) -> Transition:
    return Transition(source, action, target, frozenset(roles))


_S, _A, _R = CaseState, Action, Role
# docs/dispatch.md's table. SYSTEM may accept, file and first-dispatch because automatic events arrive from
# signature-verified scans (GB/T 30428 allows automatic filing of sensor events); re-dispatch after a return
# is a human judgement. Extension and hanging are *approvals*: the handler asks, a shift lead or supervisor
# grants, and only the grant is a transition. Closing is the supervisor's alone (issue 15): the passed check
# (GB/T 30428 step 6, "accept supervision and verification") and the special closure of a hung case. An
# invalid report is cancelled before or after acceptance (found false while filing), never once dispatched.
_TABLE: tuple[Transition, ...] = (
    _t(_S.REPORTED, _A.ACCEPT, _S.ACCEPTED, _R.INTAKE_OPERATOR, _R.SYSTEM),
    _t(_S.REPORTED, _A.CANCEL, _S.CANCELLED, _R.INTAKE_OPERATOR),
    _t(_S.ACCEPTED, _A.CANCEL, _S.CANCELLED, _R.INTAKE_OPERATOR),
    _t(_S.FILED, _A.CANCEL, _S.CANCELLED, _R.INTAKE_OPERATOR),
    _t(_S.ACCEPTED, _A.FILE, _S.FILED, _R.INTAKE_OPERATOR, _R.SYSTEM),
    _t(_S.FILED, _A.DISPATCH, _S.DISPATCHED, _R.SHIFT_LEAD, _R.SYSTEM),
    _t(_S.RETURNED, _A.DISPATCH, _S.DISPATCHED, _R.SHIFT_LEAD),
    _t(_S.DISPATCHED, _A.START, _S.IN_PROGRESS, _R.DEPARTMENT),
    _t(_S.DISPATCHED, _A.RETURN, _S.RETURNED, _R.DEPARTMENT),
    _t(_S.IN_PROGRESS, _A.FEED_BACK, _S.FED_BACK, _R.DEPARTMENT),
    _t(_S.IN_PROGRESS, _A.POSTPONE, _S.POSTPONED, _R.SHIFT_LEAD, _R.SUPERVISOR),
    _t(_S.IN_PROGRESS, _A.HANG, _S.HUNG, _R.SHIFT_LEAD, _R.SUPERVISOR),
    _t(_S.POSTPONED, _A.FEED_BACK, _S.FED_BACK, _R.DEPARTMENT),
    _t(_S.POSTPONED, _A.HANG, _S.HUNG, _R.SHIFT_LEAD, _R.SUPERVISOR),
    _t(_S.FED_BACK, _A.REQUEST_CHECK, _S.CHECKING, _R.DEPARTMENT, _R.SUPERVISOR, _R.SYSTEM),
    _t(_S.CHECKING, _A.CLOSE, _S.CLOSED, _R.SUPERVISOR),
    _t(_S.CHECKING, _A.REWORK, _S.DISPATCHED, _R.SUPERVISOR),
    _t(_S.HUNG, _A.CLOSE, _S.CLOSED, _R.SUPERVISOR),
)
TRANSITIONS: Mapping[tuple[CaseState, Action], Transition] = {(t.source, t.action): t for t in _TABLE}
# Refusals and reversals must say why: the reason is what the next person in the loop acts on.
REASON_REQUIRED: frozenset[Action] = frozenset({_A.CANCEL, _A.RETURN, _A.HANG, _A.REWORK})


def check_now(now: datetime) -> datetime:
    """Refuse a naive or non-UTC ``now`` (histories compare instants from many processes).

    :raises InvalidTimeError:
    """
    if now.tzinfo is None or now.utcoffset() != timedelta(0):
        raise InvalidTimeError("now must be timezone-aware UTC")
    return now


def _check_note(note: str | None, action: Action) -> str | None:
    if note is not None and len(note) > NOTE_MAX_CHARS:
        raise NoteTooLongError(f"note longer than {NOTE_MAX_CHARS} characters")
    if action in REASON_REQUIRED and (note is None or not note.strip()):
        raise ReasonRequiredError(f"{action} requires a reason")
    # Notes are personal data (issue 14): ID, phone and e-mail are masked before any entry holds the text, so
    # no store, answer or log downstream ever sees them. "" and None mean the same (no note).
    return mask_personal(note).text if note else None


def new_case(
    *,
    case_id: str,
    event_class: EventClass,
    place_id: str,
    jurisdiction: tuple[str, ...],
    department: str,
    actor: Actor,
    now: datetime,
    deadlines: StageDeadlines,
    urgent: bool | None = None,
    note: str | None = None,
    occurred_at: datetime | None = None,
) -> Case:
    """Open a case in ``reported`` (GB/T 30428 step 1, collect), routed to ``department``, its clock running.

    :param now: when the gateway learnt of the event (intake): the case's ``created_at`` and the start of the
        ``reported`` clock, so a report backdated by its source is neither late at once nor moved into a past
        evaluation window.
    :param urgent: ``None`` takes the event class default (epidemic exceptions are urgent).
    :param occurred_at: when the source says it happened (kept for the record, counts for nothing).
    :raises NotPermittedRoleError: unless the actor is a ``source`` or ``system``.
    """
    check_now(now)
    if actor.role not in (Role.SOURCE, Role.SYSTEM):
        raise NotPermittedRoleError(f"{actor.role} cannot report a case")
    level = initial_level(jurisdiction)
    entry = HistoryEntry(
        now, Action.REPORT, actor.actor_id, actor.role, CaseState.REPORTED, CaseState.REPORTED,
        department, level, None, _check_note(note, Action.REPORT),
    )  # fmt: skip
    if occurred_at is not None:
        check_now(occurred_at)
    case = Case(
        case_id=case_id,
        event_class=event_class,
        urgent=is_urgent(event_class) if urgent is None else urgent,
        place_id=place_id,
        jurisdiction=jurisdiction,
        department=department,
        state=CaseState.REPORTED,
        level=level,
        created_at=now,
        stage_started_at=now,
        history=(entry,),
        occurred_at=occurred_at,
    )
    return replace(case, stage_deadline=deadlines.stage_deadline(case, entered_at=now))


def apply_transition(
    case: Case,
    action: Action,
    *,
    actor: Actor,
    now: datetime,
    deadlines: StageDeadlines,
    note: str | None = None,
    department: str | None = None,
) -> Case:
    """Apply one workflow action and return the new case; ``case`` itself is never modified.

    The closure kind of ``close`` and ``cancel`` follows from the case (``closure_kind_for``); no caller chooses it.

    :param department: only with ``dispatch``: send to another department than the routed one
        (re-dispatch after a return). A rework always goes back to the same department.
    :raises IllegalTransitionError: the action is not legal in ``case.state``.
    :raises NotPermittedRoleError: the actor's role may not take it (``SupervisorRequiredError`` for a close by
        anyone but a supervisor); ``WrongDepartmentError``: a handler of another department;
        ``ReasonRequiredError``: cancel/return/hang/rework without a note; ``ExtensionAlreadyUsedError``: a second
        postpone; ``InvalidArgumentError``: a department with an action that takes none.
    """
    check_now(now)
    if case.department == UNROUTED and action is not Action.CANCEL:
        # Nobody can accept, file or dispatch a case no department serves: it is routed by hand first.
        raise CaseUnroutedError("the case is unrouted: a city dispatcher routes it first")
    move = TRANSITIONS.get((case.state, action))
    if move is None:
        raise IllegalTransitionError(f"{action} is not allowed in state {case.state}")
    if actor.role not in move.roles:
        if action in (Action.CLOSE, Action.REWORK):
            # Passing or failing a check is supervision (GB/T 30428 step 6): a distinct code, so a client can say so.
            raise SupervisorRequiredError(f"only a supervisor may pass or fail a check or close ({actor.role} tried)")
        raise NotPermittedRoleError(f"{actor.role} cannot {action} in state {case.state}")
    # Scope is enforced by the gateway too; the pure check keeps one department from acting on another's case.
    if actor.role is Role.DEPARTMENT and actor.department != case.department:
        raise WrongDepartmentError("the case belongs to another department")
    note = _check_note(note, action)
    if department is not None and action is not Action.DISPATCH:
        raise InvalidArgumentError(f"a department cannot be chosen with {action}")
    if action is Action.POSTPONE and case.extension_used:
        raise ExtensionAlreadyUsedError("the case already had its one extension")

    moved = replace(
        case,
        state=move.target,
        department=department or case.department,
        extension_used=case.extension_used or action is Action.POSTPONE,
        rework_count=case.rework_count + (action is Action.REWORK),
        return_count=case.return_count + (action is Action.RETURN),
        closure_kind=closure_kind_for(case, action, now=now),
        overdue=False,
        stage_started_at=now,
    )
    entry = HistoryEntry(
        now, action, actor.actor_id, actor.role, case.state, move.target,
        moved.department, moved.level, case.stage_deadline, note,
    )  # fmt: skip
    return replace(
        moved,
        stage_deadline=deadlines.stage_deadline(moved, entered_at=now),
        history=(*case.history, entry),
    )


def ran_late(history: Iterable[HistoryEntry]) -> bool:
    """Whether any stage of this history ran past its deadline (an entry after the deadline it left, or a flag)."""
    return any(e.action is Action.FLAG_OVERDUE or (e.deadline is not None and e.at > e.deadline) for e in history)


def closure_kind_for(case: Case, action: Action, *, now: datetime) -> ClosureKind | None:
    """The closure kind the rules give ``action`` on ``case`` at ``now`` (``None`` for a non-closing action).

    - ``cancel`` (an invalid, false or duplicate report): ``error``;
    - ``close`` of a ``hung`` case (approved unsolvable, closed by a supervisor): ``special``;
    - ``close`` of a passed check: ``overdue`` if any stage ran late, the check itself included, else ``normal``.
    """
    if action is Action.CANCEL:
        return ClosureKind.ERROR
    if action is not Action.CLOSE:
        return None
    if case.state is CaseState.HUNG:
        return ClosureKind.SPECIAL
    late_now = case.stage_deadline is not None and now > case.stage_deadline
    return ClosureKind.OVERDUE if case.overdue or late_now or ran_late(case.history) else ClosureKind.NORMAL


# (De)serialisation: every field is always present, "" for None, so an HSET overwrites stale values.


def _encode(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return "/".join(value)
    return str(value)  # str, int, StrEnum (its value)


def _read_time(value: str) -> datetime | None:
    return check_now(datetime.fromisoformat(value)) if value else None


def case_to_fields(case: Case) -> dict[str, str]:
    """The case without its history, as the fields of a Redis hash."""
    return {f.name: _encode(getattr(case, f.name)) for f in fields(Case) if f.name != "history"}


def entry_to_fields(entry: HistoryEntry) -> dict[str, str]:
    """One history entry as the fields of a stream entry (``note_expired`` is a read-time fact, never stored)."""
    return {f.name: _encode(getattr(entry, f.name)) for f in fields(HistoryEntry) if f.name != "note_expired"}


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError(f"bad flag {value!r}")
    return value == "1"


def _count(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"bad count {value!r}")
    return int(value)


def entry_from_fields(fields: Mapping[str, str]) -> HistoryEntry:
    """Read a history entry written by ``entry_to_fields``.

    :raises InvalidCaseRecordError: on a missing or malformed field.
    """
    try:
        at = _read_time(fields["at"])
        if at is None:
            raise ValueError("empty time")
        return HistoryEntry(
            at, Action(fields["action"]), fields["actor_id"], Role(fields["role"]),
            CaseState(fields["from_state"]), CaseState(fields["to_state"]), fields["department"],
            CentreLevel(fields["level"]), _read_time(fields["deadline"]), fields["note"] or None,
        )  # fmt: skip
    except (KeyError, ValueError, InvalidTimeError) as exc:
        raise InvalidCaseRecordError(f"unreadable history entry: {exc!r}") from exc


def case_from_fields(fields: Mapping[str, str], history: Iterable[HistoryEntry] = ()) -> Case:
    """Read a case written by ``case_to_fields``; ``history`` comes from the case's stream, oldest first.

    :raises InvalidCaseRecordError: on a missing or malformed field.
    """
    try:
        created_at, started_at = _read_time(fields["created_at"]), _read_time(fields["stage_started_at"])
        if created_at is None or started_at is None:
            raise ValueError("empty time")
        return Case(
            case_id=fields["case_id"],
            event_class=EventClass(fields["event_class"]),
            urgent=_flag(fields["urgent"]),
            place_id=fields["place_id"],
            jurisdiction=parse_jurisdiction(fields["jurisdiction"]),
            department=fields["department"],
            state=CaseState(fields["state"]),
            level=CentreLevel(fields["level"]),
            created_at=created_at,
            stage_started_at=started_at,
            stage_deadline=_read_time(fields["stage_deadline"]),
            overdue=_flag(fields["overdue"]),
            escalation_count=_count(fields["escalation_count"]),
            extension_used=_flag(fields["extension_used"]),
            rework_count=_count(fields["rework_count"]),
            return_count=_count(fields["return_count"]),
            closure_kind=ClosureKind(fields["closure_kind"]) if fields["closure_kind"] else None,
            history=tuple(history),
            # Absent from records written before issue 15.
            occurred_at=_read_time(fields.get("occurred_at", "")),
        )
    except (KeyError, ValueError, InvalidTimeError, InvalidJurisdictionError) as exc:
        raise InvalidCaseRecordError(f"unreadable case record: {exc!r}") from exc
