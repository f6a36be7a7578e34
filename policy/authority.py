"""Who may decide on a case: a principal's centre level and the authority that escalation moves (issue 15).

Pure. A dispatcher's or supervisor's jurisdiction is a path prefix; the centre it staffs is the highest centre
whose area that prefix names, by the same depths as ``policy.routing.centre_area``: one segment (``city``) is the
city centre, two (``city/d1``) a district centre, three or four (``city/d1/s3``, and a grid ``city/d1/s3/g2``,
which is an application unit of its street centre) a street centre, five or six a community centre.

Seeing and deciding are two rules:

- **sees** (``covers``): the principal's jurisdiction is a prefix of the case's place path. A lower centre keeps
  reading a case escalated away from it.
- **decides** (``may_decide``): it sees the case *and* its centre is the one holding the case (``case.level``) or
  above it. Escalation raises ``case.level``, so it takes the decision from the lower centre and gives it to the
  superior one (the regulation's "escalated to the superior level"); a superior centre keeps the supervisory
  power it always had over the centres below it.
"""

from __future__ import annotations

from collections.abc import Sequence

from policy.case_errors import EscalatedAboveYouError
from policy.casework import Case
from policy.routing import CentreLevel, initial_level

__all__ = ["centre_level_of", "check_may_decide", "covers", "may_decide"]

_RANK: dict[CentreLevel, int] = {level: i for i, level in enumerate(CentreLevel)}


def centre_level_of(jurisdiction: Sequence[str]) -> CentreLevel:
    """The centre a principal with this jurisdiction staffs (``city/d1/s3`` -> street).

    The same depths as the first centre over a place (``initial_level``): a place's lowest centre and a
    principal's centre are the same geometry of the one jurisdiction tree.
    """
    return initial_level(jurisdiction)


def covers(jurisdiction: Sequence[str], case: Case) -> bool:
    """Whether the principal's jurisdiction contains the case's place (it may read the case)."""
    scope = tuple(jurisdiction)
    return bool(scope) and case.jurisdiction[: len(scope)] == scope


def may_decide(jurisdiction: Sequence[str], case: Case) -> bool:
    """Whether a dispatcher or supervisor with this jurisdiction may act on ``case`` (not only read it)."""
    return covers(jurisdiction, case) and _RANK[centre_level_of(jurisdiction)] >= _RANK[case.level]


def check_may_decide(jurisdiction: Sequence[str], case: Case) -> None:
    """:raises EscalatedAboveYouError: the case is held by a centre above the principal's."""
    if not may_decide(jurisdiction, case):
        raise EscalatedAboveYouError(f"the case is held by the {case.level} centre, above yours")
