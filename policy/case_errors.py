"""Errors of the dispatch core's pure half (``casework``, ``routing``, ``deadlines``, ``case_metrics``).

Every class carries a stable machine ``code``; the gateway maps codes to HTTP statuses in one table and
renders ``{"error": code, ...}``. Messages are for operators' logs only and never hold personal data. The
tree hangs under the package base ``PolicyError`` so one ``except PolicyError`` at the edge catches every
pure-policy refusal.

    PolicyError ("invalid_policy")                        policy/errors.py
    └── CaseError ("case_error")
        ├── TransitionError ("transition_refused")        the workflow refused an action
        │   ├── IllegalTransitionError ("illegal_transition")        action not allowed in the case's state
        │   ├── NotPermittedRoleError ("not_permitted_role")         role may not take this action here
        │   │   └── SupervisorRequiredError ("supervisor_required")  a check is passed or closed by a supervisor only
        │   ├── EscalatedAboveYouError ("escalated_above_you")       the case is held by a centre above the caller's
        │   ├── WrongDepartmentError ("not_case_department")         handler of another department
        │   ├── ExtensionAlreadyUsedError ("extension_already_used") one approved extension per case
        │   ├── ReasonRequiredError ("reason_required")              cancel, return, hang, rework need a note
        │   ├── NoteTooLongError ("note_too_long")
        │   ├── InvalidArgumentError ("invalid_argument")            e.g. a department given to a rework
        │   ├── AlreadyTopLevelError ("already_top_level")           escalation above the city centre
        │   ├── DepartmentOutOfJurisdictionError ("department_out_of_jurisdiction")  serves another area
        │   └── CaseUnroutedError ("case_unrouted")                  routed by hand first (``policy.unrouted``)
        ├── InvalidTimeError ("invalid_time")             ``now`` naive or not UTC
        ├── UnknownEventClassError ("unknown_event_class")
        ├── InvalidJurisdictionError ("invalid_jurisdiction")
        ├── NoRouteError ("no_route")                     place outside the routing table's city
        ├── InvalidCaseRecordError ("invalid_case_record")  a stored case or history entry that cannot be read
        ├── InvalidRoutingTableError ("invalid_routing_table")
        └── InvalidDeadlineTableError ("invalid_deadline_table")
"""

from __future__ import annotations

from policy.errors import PolicyError

__all__ = [
    "AlreadyTopLevelError",
    "CaseError",
    "CaseUnroutedError",
    "DepartmentOutOfJurisdictionError",
    "EscalatedAboveYouError",
    "ExtensionAlreadyUsedError",
    "IllegalTransitionError",
    "InvalidArgumentError",
    "InvalidCaseRecordError",
    "InvalidDeadlineTableError",
    "InvalidJurisdictionError",
    "InvalidRoutingTableError",
    "InvalidTimeError",
    "NoRouteError",
    "NotPermittedRoleError",
    "NoteTooLongError",
    "ReasonRequiredError",
    "SupervisorRequiredError",
    "TransitionError",
    "UnknownEventClassError",
    "WrongDepartmentError",
]


class CaseError(PolicyError):
    """Base of every dispatch-core refusal."""

    code = "case_error"


class TransitionError(CaseError):
    """The case workflow refused an action; the case is unchanged."""

    code = "transition_refused"


class IllegalTransitionError(TransitionError):
    code = "illegal_transition"


class NotPermittedRoleError(TransitionError):
    code = "not_permitted_role"


class SupervisorRequiredError(NotPermittedRoleError):
    """Passing a check or closing a case is the supervisor's (GB/T 30428 step 6), never the dispatcher's."""

    code = "supervisor_required"


class EscalatedAboveYouError(TransitionError):
    """The case was escalated above the caller's centre: it may still read it, no longer decide."""

    code = "escalated_above_you"


class WrongDepartmentError(TransitionError):
    code = "not_case_department"


class ExtensionAlreadyUsedError(TransitionError):
    code = "extension_already_used"


class ReasonRequiredError(TransitionError):
    code = "reason_required"


class NoteTooLongError(TransitionError):
    code = "note_too_long"


class InvalidArgumentError(TransitionError):
    code = "invalid_argument"


class AlreadyTopLevelError(TransitionError):
    code = "already_top_level"


class InvalidTimeError(CaseError):
    code = "invalid_time"


class UnknownEventClassError(CaseError):
    code = "unknown_event_class"


class InvalidJurisdictionError(CaseError):
    code = "invalid_jurisdiction"


class NoRouteError(CaseError):
    code = "no_route"


class InvalidCaseRecordError(CaseError):
    code = "invalid_case_record"


class InvalidRoutingTableError(CaseError):
    code = "invalid_routing_table"


class InvalidDeadlineTableError(CaseError):
    code = "invalid_deadline_table"


class DepartmentOutOfJurisdictionError(TransitionError):
    """A dispatch or hand routing to a department that does not serve the case's place (routing table)."""

    code = "department_out_of_jurisdiction"


class CaseUnroutedError(TransitionError):
    """The case is in the city's unrouted queue: a city dispatcher routes it by hand before anything else."""

    code = "case_unrouted"
