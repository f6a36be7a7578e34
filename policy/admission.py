"""The admission decision: admit | deny | review, a stable reason, the rule id and the rules version.

Pure and deterministic: the same inputs give the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from crypto.native import Colour
from policy.rules import Action, ClassRule, Rules
from policy.status import HolderStatus, TestResult

__all__ = ["EXCEPTION_REASONS", "Decision", "Reason", "decide_admission", "refuse"]


class Reason(StrEnum):
    """Stable machine reasons; code-verification failures use the ``crypto`` error codes verbatim."""

    OK = "ok"
    STATUS_RED = "status_red"
    STATUS_YELLOW = "status_yellow"
    STATUS_UNKNOWN = "status_unknown"
    STATUS_UNAVAILABLE = "status_unavailable"
    TEST_MISSING = "test_missing"
    TEST_TOO_OLD = "test_too_old"
    TEST_POSITIVE = "test_positive"
    NOT_VACCINATED = "not_vaccinated"
    UNKNOWN_VENUE_CLASS = "unknown_venue_class"
    REPLAYED = "replayed"
    CODE_SHARED = "code_shared"
    FEVER = "fever"  # a sentry's temperature reading at or above the class's threshold (policy/temperature.py)


# Reasons that become a case for the dispatch core (red/yellow holder, forgery, replay, code sharing).
EXCEPTION_REASONS: frozenset[str] = frozenset(
    {
        "status_red",
        "status_yellow",
        "replayed",
        "code_shared",
        "bad_signature",
        "unknown_key",
        "wrong_key_usage",
        "alg_mismatch",
        "key_revoked",
        "key_out_of_window",
        # An EU DCC whose kid differs between the COSE header buckets, or whose alg sits only in the unsigned
        # one, is tampering: a forgery case like a bad signature.
        "cose_header_conflict",
        # A sentry's reading at or above the fever threshold: a case for the community health service.
        "fever",
    }
)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    rule_id: str
    rules_version: str
    degraded: bool = False

def refuse(rules: Rules, reason: str, *, rule_id: str = "code") -> Decision:
    """A deny for a code that failed verification, replay or sharing checks."""
    return Decision(Action.DENY, reason, rule_id, rules.version)


def decide_admission(
    rules: Rules,
    *,
    venue_class: str,
    signed_colour: Colour | None,
    status: HolderStatus | None,
    now: datetime,
    status_available: bool = True,
) -> Decision:
    """Decide for a holder whose code already verified.

    :param signed_colour: the colour signed into the code at issue; ``None`` for a presentation that carries none
        (a paper code, an identity card: issue 18), which is decided on the live status alone.
    :param status: the cached status, ``None`` when the holder is not in the cache.
    :param status_available: ``False`` when the status cache could not answer in time (degraded mode): the
        signed colour at issue and the venue class decide, and the decision says ``degraded``.
    """
    rule = rules.for_class(venue_class)
    if rule is None:
        return Decision(Action.DENY, Reason.UNKNOWN_VENUE_CLASS, "venue_class", rules.version)
    cls = rule.venue_class
    if not status_available:
        return _degraded(rules, rule, signed_colour)
    if status is None or now - status.updated_at > timedelta(hours=rules.status_max_age_h):
        return Decision(rule.on_unknown, Reason.STATUS_UNKNOWN, f"{cls}.status", rules.version)
    # The live status wins over the colour signed into the code: it may have turned red since issue.
    if status.colour is Colour.RED or signed_colour is Colour.RED:
        return Decision(Action.DENY, Reason.STATUS_RED, f"{cls}.colour", rules.version)
    if status.colour is Colour.YELLOW or signed_colour is Colour.YELLOW:
        return Decision(Action.DENY, Reason.STATUS_YELLOW, f"{cls}.colour", rules.version)
    if rule.test_within_h is not None:
        if status.tested_at is None or status.test_result is TestResult.NONE:
            return Decision(Action.DENY, Reason.TEST_MISSING, f"{cls}.test", rules.version)
        if rule.negative_test_required and status.test_result is TestResult.POSITIVE:
            return Decision(Action.DENY, Reason.TEST_POSITIVE, f"{cls}.test", rules.version)
        if now - status.tested_at > timedelta(hours=rule.test_within_h):
            return Decision(Action.DENY, Reason.TEST_TOO_OLD, f"{cls}.test", rules.version)
    if rule.vaccination_required and not status.vaccinated:
        return Decision(Action.DENY, Reason.NOT_VACCINATED, f"{cls}.vaccination", rules.version)
    return Decision(Action.ADMIT, Reason.OK, f"{cls}.ok", rules.version)


def _degraded(rules: Rules, rule: ClassRule, signed_colour: Colour | None) -> Decision:
    rule_id = f"{rule.venue_class}.degraded"
    if signed_colour is None:
        # Nothing signed vouches for the holder's colour (a paper code, an identity card): never admitted without
        # a live status, whatever the class's on_degraded says (docs/operations.md "Degraded mode").
        action = Action.REVIEW if rule.on_degraded is Action.ADMIT else rule.on_degraded
        return Decision(action, Reason.STATUS_UNAVAILABLE, rule_id, rules.version, degraded=True)
    if signed_colour is Colour.RED:
        return Decision(Action.DENY, Reason.STATUS_RED, rule_id, rules.version, degraded=True)
    if signed_colour is Colour.YELLOW:
        return Decision(Action.DENY, Reason.STATUS_YELLOW, rule_id, rules.version, degraded=True)
    if rule.on_degraded is Action.ADMIT:
        return Decision(Action.ADMIT, Reason.OK, rule_id, rules.version, degraded=True)
    return Decision(rule.on_degraded, Reason.STATUS_UNAVAILABLE, rule_id, rules.version, degraded=True)
