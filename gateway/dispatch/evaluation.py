"""The dispatch evaluation (GB/T 30428 step 7) as a document, and the instants its ranges are given in: shared
by ``GET /v1/dispatch/metrics`` and ``placegate dispatch report`` (which needs no web framework)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from policy.case_metrics import CaseMetrics, evaluate, evaluate_by_department, evaluate_by_jurisdiction
from policy.casework import Case
from policy.routing import JurisdictionLevel

__all__ = ["evaluation_document", "parse_instant"]


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with an offset (``Z`` allowed), as UTC. :raises ValueError:"""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("an offset is required")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it: bad input, not a crash
        raise ValueError("the instant lies outside the calendar in UTC") from None


def _metrics_json(m: CaseMetrics) -> dict[str, Any]:
    return {
        "cases": m.cases,
        "cancelled": m.cancelled,
        "filed": m.filed,
        "dispatched": m.dispatched,
        "handled": m.handled,
        "closed": m.closed,
        "closure_kinds": m.closure_kinds(),
        **m.rates(),
    }


def evaluation_document(
    cases: Iterable[Case], *, start: datetime, end: datetime, level: JurisdictionLevel
) -> dict[str, Any]:
    """Overall, per-department and per-jurisdiction figures; counts and rates only, no personal data."""
    population = list(cases)
    by_dept = evaluate_by_department(population, start=start, end=end)
    by_area = evaluate_by_jurisdiction(population, start=start, end=end, level=level)
    return {
        "from": start.isoformat(), "to": end.isoformat(), "level": level.value,
        "overall": _metrics_json(evaluate(population, start=start, end=end)),
        "by_department": {k: _metrics_json(v) for k, v in sorted(by_dept.items())},
        "by_jurisdiction": {k: _metrics_json(v) for k, v in sorted(by_area.items())},
    }  # fmt: skip
