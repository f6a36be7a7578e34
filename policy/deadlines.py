"""Stage deadlines, overdue flags and escalation of cases (docs/dispatch.md "Deadlines, overdue and escalation").

Every stage that is not terminal has a clock (issue 15), ``reported`` and ``hung`` included: a time budget per
event class from a TOML table validated at load (``parse_deadline_table``; a stage without a budget is a load
error). ``DeadlineTable.stage_deadline`` is what ``apply_transition`` calls on entering a
stage. ``assess`` is the pure half of the sweeper: at 100 % of the budget the stage is overdue; at 2x it is
escalated one centre up (community -> street -> district -> city) and at every further 2x (4x, 6x, ...) once
more, until the city centre holds it. The case keeps its id; the flag and each step are history entries of
role ``system``. Budgets are wall-clock durations, except stages the table's ``[working_time]`` marks: those
count the working hours of the table's calendar (``policy.calendar``; default 24x7).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from importlib import resources
from types import MappingProxyType

from policy.calendar import ALWAYS, WorkingCalendar, add_working_time
from policy.case_errors import AlreadyTopLevelError, InvalidDeadlineTableError
from policy.casework import TERMINAL_STATES, Action, Case, CaseState, HistoryEntry, Role, check_now
from policy.routing import CentreLevel, EventClass

__all__ = [
    "ESCALATION_FACTOR",
    "Assessment",
    "ClassDeadlines",
    "DeadlineTable",
    "apply_assessment",
    "assess",
    "escalate",
    "load_default_deadline_table",
    "next_due_at",
    "parse_deadline_table",
    "sweep",
]

# docs/dispatch.md: escalated to the superior level at 2x; each further 2x of the budget escalates one step more.
ESCALATION_FACTOR = 2


@dataclass(frozen=True, slots=True)
class ClassDeadlines:
    """Budgets of one event class, one per stage (every stage that is not terminal has a clock)."""

    reported_urgent: timedelta
    reported_normal: timedelta
    accepted: timedelta
    filed_urgent: timedelta
    filed_normal: timedelta
    dispatched: timedelta
    in_progress: timedelta
    extension: timedelta
    fed_back: timedelta
    checking: timedelta
    hung: timedelta


@dataclass(frozen=True, slots=True)
class DeadlineTable:
    """Budgets for every event class; implements ``policy.casework.StageDeadlines``."""

    version: str
    classes: Mapping[EventClass, ClassDeadlines]
    # Stages whose clock counts only the calendar's working time (``[working_time]`` of the table; policy/calendar.py).
    working_time: Mapping[EventClass, frozenset[CaseState]] = field(default_factory=lambda: MappingProxyType({}))
    calendar: WorkingCalendar = ALWAYS  # 24x7: working time is wall-clock time

    def budget(self, event_class: EventClass, state: CaseState, *, urgent: bool) -> timedelta | None:
        """Time allowed in ``state`` (``None``: a terminal state). Postponed is relative, see ``stage_deadline``."""
        c = self.classes[event_class]
        if state is CaseState.REPORTED:
            # Verification of a report (or an automatic event awaiting intake): urgent cases are looked at first.
            return c.reported_urgent if urgent else c.reported_normal
        if state in (CaseState.FILED, CaseState.RETURNED):
            # A returned case waits for the dispatcher exactly like a freshly filed one: re-dispatch is the
            # same job under the same "file + dispatch" clock.
            return c.filed_urgent if urgent else c.filed_normal
        return {
            CaseState.ACCEPTED: c.accepted,
            CaseState.DISPATCHED: c.dispatched,
            CaseState.IN_PROGRESS: c.in_progress,
            CaseState.FED_BACK: c.fed_back,
            CaseState.CHECKING: c.checking,
            CaseState.HUNG: c.hung,
        }.get(state)

    def stage_deadline(self, case: Case, *, entered_at: datetime) -> datetime | None:
        """Deadline of ``case.state`` entered at ``entered_at`` (``case.stage_deadline``: the previous)."""
        if case.state is CaseState.POSTPONED:
            # The extension moves the handling deadline; granted after it had passed, it counts from the grant
            # so the handler always gets the approved time.
            base = max(case.stage_deadline or entered_at, entered_at)
            return self._add(case, base, self.classes[case.event_class].extension)
        budget = self.budget(case.event_class, case.state, urgent=case.urgent)
        return None if budget is None else self._add(case, entered_at, budget)

    def _add(self, case: Case, start: datetime, budget: timedelta) -> datetime:
        if case.state in self.working_time.get(case.event_class, frozenset()):
            return add_working_time(self.calendar, start, budget)
        return start + budget


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the sweeper must do to a case at ``now``."""

    overdue: bool  # the stage deadline has passed
    flag_overdue: bool  # overdue and not yet flagged on the case
    escalate_to: tuple[CentreLevel, ...]  # centres to step through now, lowest first
    next_check_at: datetime | None  # when the answer can next change; None: never (no clock or at city)


def _escalations_in_stage(case: Case) -> int:
    # ESCALATE and FLAG_OVERDUE never change the state, so the entries after the last state change are this
    # stage's; counting them makes a repeated sweep at the same ``now`` a no-op.
    n = 0
    for entry in reversed(case.history):
        if entry.action is Action.ESCALATE:
            n += 1
        elif entry.action is not Action.FLAG_OVERDUE:
            break
    return n


def _ladder_above(level: CentreLevel) -> tuple[CentreLevel, ...]:
    above: list[CentreLevel] = []
    nxt = level.superior()
    while nxt is not None:
        above.append(nxt)
        nxt = nxt.superior()
    return tuple(above)


def assess(case: Case, *, now: datetime) -> Assessment:
    """Decide overdue flag and escalation of ``case`` at ``now`` (no side effects).

    :raises InvalidTimeError: if ``now`` is naive or not UTC.
    """
    check_now(now)
    deadline = case.stage_deadline
    if case.state in TERMINAL_STATES or deadline is None:
        return Assessment(False, False, (), None)
    # A restored record with a deadline at or before the stage start would divide by zero; one second keeps
    # the ladder well defined and such a case escalates at once, which is the safe direction.
    budget = max(deadline - case.stage_started_at, timedelta(seconds=1))
    step = budget * ESCALATION_FACTOR
    overdue = now >= deadline
    due = max((now - case.stage_started_at) // step, 0)
    done = _escalations_in_stage(case)
    ladder = _ladder_above(case.level)
    escalate_to = ladder[: max(due - done, 0)]
    remaining = len(ladder) - len(escalate_to)
    if not overdue:
        next_check: datetime | None = deadline
    elif remaining:
        next_check = case.stage_started_at + step * (max(due, done) + 1)
    else:
        next_check = None
    return Assessment(overdue, overdue and not case.overdue, escalate_to, next_check)


def next_due_at(case: Case) -> datetime | None:
    """The earliest instant at which ``sweep`` would change ``case``; ``None`` when it never will (a terminal
    state, a stage without a clock, or the overdue flag set and the city centre holding the case).

    Unlike ``assess(...).next_check_at`` it needs no ``now``: it is a property of the stored case, so a writer can
    file the case under it in a sorted set and a sweeper need only read the cases whose instant has come.
    ``sweep(case, now=t) is case`` for every ``t`` before it.
    """
    deadline = case.stage_deadline
    if case.state in TERMINAL_STATES or deadline is None:
        return None
    if not case.overdue:
        # The first escalation (2x the budget) always comes after the deadline (1x), so the flag is first.
        return deadline
    if not _ladder_above(case.level):
        return None
    step = max(deadline - case.stage_started_at, timedelta(seconds=1)) * ESCALATION_FACTOR
    return case.stage_started_at + step * (_escalations_in_stage(case) + 1)


def _system_entry(
    case: Case, action: Action, *, now: datetime, actor_id: str, level: CentreLevel
) -> HistoryEntry:
    return HistoryEntry(
        now,
        action,
        actor_id,
        Role.SYSTEM,
        case.state,
        case.state,
        case.department,
        level,
        case.stage_deadline,
    )


def escalate(case: Case, *, now: datetime, actor_id: str = "sweeper") -> Case:
    """Move responsibility one centre up (same case id), recorded as a ``system`` history entry.

    :raises AlreadyTopLevelError: if the city centre already holds the case.
    """
    check_now(now)
    superior = case.level.superior()
    if superior is None:
        raise AlreadyTopLevelError("the city centre is the top of the ladder")
    entry = _system_entry(case, Action.ESCALATE, now=now, actor_id=actor_id, level=superior)
    return replace(
        case, level=superior, escalation_count=case.escalation_count + 1, history=(*case.history, entry)
    )


def apply_assessment(case: Case, assessment: Assessment, *, now: datetime, actor_id: str = "sweeper") -> Case:
    """Apply what ``assess`` found: flag overdue once, then one escalation entry per centre stepped."""
    check_now(now)
    if assessment.flag_overdue:
        entry = _system_entry(case, Action.FLAG_OVERDUE, now=now, actor_id=actor_id, level=case.level)
        case = replace(case, overdue=True, history=(*case.history, entry))
    for _ in assessment.escalate_to:
        case = escalate(case, now=now, actor_id=actor_id)
    return case


def sweep(case: Case, *, now: datetime, actor_id: str = "sweeper") -> Case:
    """``assess`` then ``apply_assessment``: the sweeper step for one case (idempotent at one ``now``)."""
    return apply_assessment(case, assess(case, now=now), now=now, actor_id=actor_id)


_UNITS: Mapping[str, timedelta] = {
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_KEY_RE = re.compile(r"(?P<stage>[a-z_]+?)_(?P<unit>min|h|d)")
_DEFAULT_STAGES = frozenset(
    {"reported_urgent", "reported_normal", "accepted", "filed_urgent", "filed_normal", "dispatched", "fed_back",
     "checking", "hung"}
)  # fmt: skip
# "filed" / "reported" per class override both urgency variants: a class with its own clock is one decision.
_CLASS_STAGES = frozenset(
    {"reported", "accepted", "filed", "dispatched", "in_progress", "extension", "fed_back", "checking", "hung"}
)
# After the defaults are merged in, every one of these must have a budget: no stage runs without a clock.
_REQUIRED = (
    "reported_urgent", "reported_normal", "accepted", "filed_urgent", "filed_normal", "dispatched", "fed_back",
    "checking", "hung",
)  # fmt: skip
_MAX_BUDGET = timedelta(days=366)


def _budgets(raw: object, allowed: frozenset[str], where: str) -> dict[str, timedelta]:
    if not isinstance(raw, dict):
        raise InvalidDeadlineTableError(f"{where} must be a table")
    out: dict[str, timedelta] = {}
    for key, value in raw.items():
        m = _KEY_RE.fullmatch(key)
        if m is None or m["stage"] not in allowed:
            raise InvalidDeadlineTableError(f"{where}: unknown key {key[:40]!r} (stage + _min, _h or _d)")
        if m["stage"] in out:
            raise InvalidDeadlineTableError(f"{where}: {m['stage']} given twice")
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidDeadlineTableError(f"{where}.{key} must be a positive integer")
        budget = value * _UNITS[m["unit"]]
        if budget > _MAX_BUDGET:
            raise InvalidDeadlineTableError(f"{where}.{key} is longer than a year")
        out[m["stage"]] = budget
    return out


def parse_deadline_table(text: str) -> DeadlineTable:
    """Parse and validate a deadline table TOML document.

    :raises InvalidDeadlineTableError: on TOML errors, unknown keys or event classes, a stage given twice,
        non-positive or over-a-year budgets, an event class without ``in_progress`` and ``extension``, or any
        stage left without a budget once the defaults are merged in.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDeadlineTableError(f"not valid TOML: {exc}") from exc
    if unknown := set(data) - {"version", "defaults", "classes", "working_time"}:
        raise InvalidDeadlineTableError(f"unknown keys {sorted(unknown)}")
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise InvalidDeadlineTableError("version must be a non-empty string")
    defaults = _budgets(data.get("defaults", {}), _DEFAULT_STAGES, "defaults")
    classes_raw = data.get("classes")
    if not isinstance(classes_raw, dict):
        raise InvalidDeadlineTableError("classes must be a table")
    classes: dict[EventClass, ClassDeadlines] = {}
    for name, raw in classes_raw.items():
        try:
            event_class = EventClass(name)
        except ValueError:
            raise InvalidDeadlineTableError(f"unknown event class {name[:40]!r}") from None
        own = _budgets(raw, _CLASS_STAGES, f"classes.{name}")
        if missing := {"in_progress", "extension"} - set(own):
            raise InvalidDeadlineTableError(f"classes.{name}: missing {sorted(missing)}")
        merged = {**defaults, **own}
        for stage in ("reported", "filed"):
            if stage in own:
                merged[f"{stage}_urgent"] = merged[f"{stage}_normal"] = own[stage]
        if unclocked := [k for k in _REQUIRED if k not in merged]:
            raise InvalidDeadlineTableError(f"classes.{name}: no clock for {unclocked} (every stage has one)")
        classes[event_class] = ClassDeadlines(
            reported_urgent=merged["reported_urgent"],
            reported_normal=merged["reported_normal"],
            accepted=merged["accepted"],
            filed_urgent=merged["filed_urgent"],
            filed_normal=merged["filed_normal"],
            dispatched=merged["dispatched"],
            in_progress=own["in_progress"],
            extension=own["extension"],
            fed_back=merged["fed_back"],
            checking=merged["checking"],
            hung=merged["hung"],
        )
    if gaps := set(EventClass) - set(classes):
        raise InvalidDeadlineTableError(f"no deadlines for {sorted(gaps)}")
    return DeadlineTable(version, MappingProxyType(classes), _working_time(data.get("working_time", {})))


# ``[working_time]``: event class -> the stages (as the class tables name them) whose clock counts working time.
_STAGE_STATES: Mapping[str, frozenset[CaseState]] = {
    "accepted": frozenset({CaseState.ACCEPTED}), "filed": frozenset({CaseState.FILED, CaseState.RETURNED}),
    "dispatched": frozenset({CaseState.DISPATCHED}), "in_progress": frozenset({CaseState.IN_PROGRESS}),
    "extension": frozenset({CaseState.POSTPONED}), "fed_back": frozenset({CaseState.FED_BACK}),
    "checking": frozenset({CaseState.CHECKING}), "reported": frozenset({CaseState.REPORTED}),
    "hung": frozenset({CaseState.HUNG}),
}  # fmt: skip


def _working_time(raw: object) -> Mapping[EventClass, frozenset[CaseState]]:
    if not isinstance(raw, dict):
        raise InvalidDeadlineTableError("working_time must be a table of event class = [stages]")
    out: dict[EventClass, frozenset[CaseState]] = {}
    for name, stages in raw.items():
        try:
            event_class = EventClass(name)
        except ValueError:
            raise InvalidDeadlineTableError(f"working_time: unknown event class {name[:40]!r}") from None
        if not isinstance(stages, list) or not all(isinstance(x, str) and x in _STAGE_STATES for x in stages):
            raise InvalidDeadlineTableError(f"working_time.{name}: a list of {', '.join(_STAGE_STATES)}")
        out[event_class] = frozenset(state for x in stages for state in _STAGE_STATES[x])
    return MappingProxyType(out)


def load_default_deadline_table() -> DeadlineTable:
    """The deadline table shipped with the package (``policy/default_deadlines.toml``)."""
    text = resources.files("policy").joinpath("default_deadlines.toml").read_text(encoding="utf-8")
    return parse_deadline_table(text)
