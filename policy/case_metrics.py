"""Evaluation of dispatch cases (GB/T 30428 step 7, evaluate), per department and per jurisdiction.

Pure: the caller passes the cases (with their full histories) and a half-open range ``[start, end)``.

Population: a case counts when ``start <= created_at < end``. ``created_at`` is the intake time (when the gateway
learnt of the event), never the time a source claims, and every history entry is written at the writer's clock,
so nothing can be added to a window after it closed; every entry at or after ``end`` is ignored. So the figures
of a closed window never change (issue 15 "time is honest"). Cancelled cases (invalid, false or duplicate
reports, closure kind ``error``) are counted in ``cancelled`` and nowhere else: they never entered the loop.

Grouping: per jurisdiction prefix, a case counts once under its place. Per department (``evaluate_by_department``)
each stage is charged to the department that held it: the dispatches to a department, its returns, its
feedback and its handling time count under it (its handling time summed over the spans in which it held the
case, each from the dispatch to it to its last feedback before the case left it: ``_holding_seconds``); a
department that returned the case and does not hold it at ``end`` is not measured on handling it. The case's
outcomes (cases, filing, check, closure and closure kinds) count once, under the department responsible at ``end``.

An entry is *on time* when it has no stage deadline or ``entry.at <= entry.deadline`` (the deadline of the
stage the entry left, recorded by ``apply_transition``). Counters per group, each a number of cases unless
noted:

- ``cases``: non-cancelled cases in the population.
- ``filed``: cases with a ``file`` entry; ``filed_on_time``: whose ``accept`` and ``file`` entries are both on
  time (the ``reported`` clock until acceptance, then the ``accepted`` one until filing).
- ``dispatches``: number of ``dispatch`` entries (first dispatch and re-dispatches after a return; reworks
  are ``rework`` entries and not counted); ``returns``: number of ``return`` entries.
- ``dispatched``: cases with at least one ``dispatch`` entry.
- ``handled``: cases with a ``feed_back`` entry; ``handled_on_time``: handled cases whose every
  ``feed_back`` entry is on time (against the handling deadline, or the extended one when postponed).
- ``handling_seconds``: sum over handled cases of (last ``feed_back`` at - first ``dispatch`` at).
- ``checked``: cases with a ``request_check`` entry; ``reworked``: cases with a ``rework`` entry.
- ``closed``: cases with a ``close`` entry; ``closed_on_time``: closed cases with no ``flag_overdue``
  entry and every entry on time.
- ``closed_normal``, ``closed_overdue``, ``closed_special``: closed cases by closure kind, by the rules of
  ``policy.casework.closure_kind_for`` applied to the history known at ``end``; the kind ``error`` is
  ``cancelled``.

Rates (``None`` when the denominator is 0):

- on-time filing rate = filed_on_time / filed
- dispatch accuracy = 1 - returns / dispatches
- handling rate = handled / dispatched
- on-time handling rate = handled_on_time / dispatched
- closure rate = closed / filed
- on-time closure rate = closed_on_time / filed
- rework rate = reworked / checked
- mean handling time = handling_seconds / handled (seconds)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import datetime

from policy.casework import Action, Case, CaseState, ClosureKind, HistoryEntry, check_now, ran_late
from policy.routing import JurisdictionLevel, format_jurisdiction

__all__ = ["CaseMetrics", "evaluate", "evaluate_by_department", "evaluate_by_jurisdiction"]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True, slots=True)
class CaseMetrics:
    """Counters of one group; the rates are derived properties (definitions in the module docstring)."""

    cases: int = 0
    cancelled: int = 0
    filed: int = 0
    filed_on_time: int = 0
    dispatches: int = 0
    returns: int = 0
    dispatched: int = 0
    handled: int = 0
    handled_on_time: int = 0
    handling_seconds: float = 0.0
    checked: int = 0
    reworked: int = 0
    closed: int = 0
    closed_on_time: int = 0
    closed_normal: int = 0
    closed_overdue: int = 0
    closed_special: int = 0

    def __add__(self, other: CaseMetrics) -> CaseMetrics:
        return CaseMetrics(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(CaseMetrics)))

    @property
    def on_time_filing_rate(self) -> float | None:
        return _ratio(self.filed_on_time, self.filed)

    @property
    def dispatch_accuracy(self) -> float | None:
        rate = _ratio(self.returns, self.dispatches)
        return None if rate is None else 1.0 - rate

    @property
    def handling_rate(self) -> float | None:
        return _ratio(self.handled, self.dispatched)

    @property
    def on_time_handling_rate(self) -> float | None:
        return _ratio(self.handled_on_time, self.dispatched)

    @property
    def closure_rate(self) -> float | None:
        return _ratio(self.closed, self.filed)

    @property
    def on_time_closure_rate(self) -> float | None:
        return _ratio(self.closed_on_time, self.filed)

    @property
    def rework_rate(self) -> float | None:
        return _ratio(self.reworked, self.checked)

    @property
    def mean_handling_time_s(self) -> float | None:
        return _ratio(self.handling_seconds, self.handled)

    def closure_kinds(self) -> dict[str, int]:
        """Cases ended, per closure kind (``error``: cancelled as invalid)."""
        return {
            ClosureKind.NORMAL.value: self.closed_normal,
            ClosureKind.OVERDUE.value: self.closed_overdue,
            ClosureKind.SPECIAL.value: self.closed_special,
            ClosureKind.ERROR.value: self.cancelled,
        }

    def rates(self) -> dict[str, float | None]:
        """The eight published figures by stable name (for the API and the report CLI)."""
        return {
            "on_time_filing_rate": self.on_time_filing_rate,
            "dispatch_accuracy": self.dispatch_accuracy,
            "handling_rate": self.handling_rate,
            "on_time_handling_rate": self.on_time_handling_rate,
            "closure_rate": self.closure_rate,
            "on_time_closure_rate": self.on_time_closure_rate,
            "rework_rate": self.rework_rate,
            "mean_handling_time_s": self.mean_handling_time_s,
        }


def _on_time(entry: HistoryEntry) -> bool:
    return entry.deadline is None or entry.at <= entry.deadline


def _known(case: Case, end: datetime) -> tuple[HistoryEntry, ...]:
    return tuple(e for e in case.history if e.at < end)


def _tally(history: tuple[HistoryEntry, ...]) -> CaseMetrics:
    by_action: dict[Action, list[HistoryEntry]] = {}
    for entry in history:
        by_action.setdefault(entry.action, []).append(entry)
    if Action.CANCEL in by_action:
        return CaseMetrics(cancelled=1)
    files = by_action.get(Action.FILE, [])
    accepts = by_action.get(Action.ACCEPT, [])
    dispatches = by_action.get(Action.DISPATCH, [])
    feedbacks = by_action.get(Action.FEED_BACK, [])
    handled = bool(feedbacks) and bool(dispatches)
    closes = by_action.get(Action.CLOSE, [])
    closed = bool(closes)
    kind = _closure_kind(history, closes[0]) if closes else None
    return CaseMetrics(
        cases=1,
        filed=int(bool(files)),
        # The wait in ``reported`` counts: a report verified late was not filed on time, however fast the filing.
        filed_on_time=int(bool(files) and _on_time(files[0]) and all(_on_time(e) for e in accepts[:1])),
        dispatches=len(dispatches),
        returns=len(by_action.get(Action.RETURN, [])),
        dispatched=int(bool(dispatches)),
        handled=int(handled),
        handled_on_time=int(handled and all(_on_time(e) for e in feedbacks)),
        handling_seconds=(feedbacks[-1].at - dispatches[0].at).total_seconds() if handled else 0.0,
        checked=int(Action.REQUEST_CHECK in by_action),
        reworked=int(Action.REWORK in by_action),
        closed=int(closed),
        closed_on_time=int(
            closed and Action.FLAG_OVERDUE not in by_action and all(_on_time(e) for e in history)
        ),
        closed_normal=int(kind is ClosureKind.NORMAL),
        closed_overdue=int(kind is ClosureKind.OVERDUE),
        closed_special=int(kind is ClosureKind.SPECIAL),
    )


def _closure_kind(history: tuple[HistoryEntry, ...], close: HistoryEntry) -> ClosureKind:
    # The rule of ``closure_kind_for``, read back from the history: a hung case closes special; a passed check
    # overdue when any stage ran late up to and including the check, else normal.
    if close.from_state is CaseState.HUNG:
        return ClosureKind.SPECIAL
    upto = history[: history.index(close) + 1]
    return ClosureKind.OVERDUE if ran_late(upto) else ClosureKind.NORMAL


_STAGE_COUNTERS = ("dispatches", "returns", "dispatched", "handled", "handled_on_time", "handling_seconds")


def _department_tallies(history: tuple[HistoryEntry, ...]) -> dict[str, CaseMetrics]:
    """One case split over the departments that held it: the department stages' figures (dispatches, returns,
    handling) under each department that held them; the case's outcomes under the department holding it last."""
    holder = history[-1].department
    whole = _tally(history)
    if whole.cancelled:
        return {holder: whole}
    outcome = replace(whole, **{name: 0 for name in _STAGE_COUNTERS})
    out: dict[str, CaseMetrics] = {holder: outcome}
    departments = {e.department for e in history if e.action is Action.DISPATCH}
    for dept in departments:
        mine = [e for e in history if e.department == dept]
        received = [e for e in mine if e.action is Action.DISPATCH]
        feedbacks = [e for e in mine if e.action is Action.FEED_BACK]
        handled = bool(feedbacks)
        stage = CaseMetrics(
            dispatches=len(received),
            returns=sum(1 for e in mine if e.action is Action.RETURN),
            # A department that handed the case back and no longer holds it is not measured on handling it:
            # its return counts against the dispatch, not against its handling rate.
            dispatched=int(handled or dept == holder),
            handled=int(handled),
            handled_on_time=int(handled and all(_on_time(e) for e in feedbacks)),
            handling_seconds=_holding_seconds(history, dept),
        )
        out[dept] = out.get(dept, CaseMetrics()) + stage
    return out


def _holding_seconds(history: tuple[HistoryEntry, ...], dept: str) -> float:
    """The handling time charged to ``dept``: over each span in which it held the case (from a dispatch to it until
    the case left it: its return, or an entry naming another department), from the dispatch to its last feedback
    in that span; a span without a feedback (a return) charges nothing. A case that went to A, back, to B, back
    and to A again charges A from its second dispatch only, never for the time B held it (issue 15: each stage's
    time to the department that held it)."""
    total = 0.0
    start: datetime | None = None
    last_feedback: datetime | None = None
    for entry in history:
        if start is not None and (entry.department != dept or entry.action is Action.RETURN):
            if last_feedback is not None:
                total += (last_feedback - start).total_seconds()
            start = last_feedback = None
            continue
        if start is None and entry.action is Action.DISPATCH and entry.department == dept:
            start = entry.at
        elif start is not None and entry.action is Action.FEED_BACK:
            last_feedback = entry.at
    if start is not None and last_feedback is not None:
        total += (last_feedback - start).total_seconds()
    return total


def _population(
    cases: Iterable[Case], start: datetime, end: datetime
) -> Iterable[tuple[Case, tuple[HistoryEntry, ...]]]:
    check_now(start)
    check_now(end)
    for case in cases:
        if start <= case.created_at < end:
            yield case, _known(case, end)


def evaluate(cases: Iterable[Case], *, start: datetime, end: datetime) -> CaseMetrics:
    """All cases created in ``[start, end)`` as one group.

    :raises InvalidTimeError: if ``start`` or ``end`` is naive or not UTC.
    """
    return sum((_tally(h) for _, h in _population(cases, start, end)), CaseMetrics())


def evaluate_by_department(
    cases: Iterable[Case], *, start: datetime, end: datetime
) -> dict[str, CaseMetrics]:
    """Per department, each stage charged to the department that held it (module docstring, "Grouping")."""
    out: dict[str, CaseMetrics] = {}
    for _, history in _population(cases, start, end):
        for department, metrics in _department_tallies(history).items():
            out[department] = out.get(department, CaseMetrics()) + metrics
    return out


def evaluate_by_jurisdiction(
    cases: Iterable[Case], *, start: datetime, end: datetime, level: JurisdictionLevel
) -> dict[str, CaseMetrics]:
    """Per jurisdiction prefix at ``level`` (key ``"metro/east"`` for a district); a place registered above
    ``level`` counts under its own, shorter path."""
    out: dict[str, CaseMetrics] = {}
    for case, history in _population(cases, start, end):
        key = format_jurisdiction(case.jurisdiction[: level.depth])
        out[key] = out.get(key, CaseMetrics()) + _tally(history)
    return out
