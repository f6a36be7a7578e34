"""EU DCC entries as the holder status the venue-class rules judge (no live status exists for an HC1 holder).

The certificate itself is the status: a vaccination, test or recovery entry (hcert value sets, eHN
ehn-dcc-valuesets) becomes a ``HolderStatus`` with the same fields the health-authority feed fills, so the
same rules and the same reasons vocabulary (``test_missing``, ``test_too_old``, ``test_positive``,
``not_vaccinated``) apply.  Business rules beyond that mapping (vaccine products, waiting periods, national
recovery-by-positive-test rules) are deliberately not guessed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from crypto.cbor import CborKey, CborTag, CborValue
from crypto.dcc_schema import dcc_to_json
from crypto.native import Colour
from policy.admission import Decision, Reason, decide_admission
from policy.dcc_rules import DccBusinessRules, apply_rule_set
from policy.rules import Action, Rules
from policy.status import HolderStatus, TestResult

__all__ = [
    "ACCEPTED_TEST_TYPES",
    "DCC_RULES_UNAVAILABLE",
    "DCC_RULE_FAILED",
    "RESULT_DETECTED",
    "RESULT_NOT_DETECTED",
    "DccStatus",
    "dcc_status",
    "decide_dcc_admission",
]

# ehn-dcc-valuesets test-result.json (SNOMED CT).
RESULT_NOT_DETECTED: Final = "260415000"
RESULT_DETECTED: Final = "260373001"
# test-type.json: LP6464-4 is a nucleic-acid amplification test; the venue rules (README.md "API overview")
# ask for a nucleic-acid test, so a negative rapid antigen test (LP217198-3) does not satisfy them.
NAAT: Final = "LP6464-4"
RAT: Final = "LP217198-3"
ACCEPTED_TEST_TYPES: Final = frozenset({NAAT})
# Refusals of the business-rule sets (docs/dcc.md "Rule sets").
DCC_RULE_FAILED: Final = "dcc_rule_failed"
DCC_RULES_UNAVAILABLE: Final = "dcc_rules_unavailable"
# A sample time in the future beyond this is an issuer error, not a test that can be judged.
SAMPLE_LEEWAY: Final = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class DccStatus:
    """The status a certificate proves, plus which kind of entry proved it."""

    status: HolderStatus
    entry_type: str  # "v" | "t" | "r"


def _date(value: CborValue) -> date | None:
    if isinstance(value, CborTag) and value.tag == 1004:  # RFC 8943 full-date string
        value = value.value
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _instant(value: CborValue) -> datetime | None:
    if isinstance(value, CborTag) and value.tag == 0:
        value = value.value
    elif isinstance(value, CborTag) and value.tag == 1:
        number = value.value
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            return None
        try:
            return datetime.fromtimestamp(number, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    # hcert §2.6.3 requires an offset; a bare time is read as UTC rather than the gateway's local zone.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _entries(dcc: Mapping[CborKey, CborValue], kind: str) -> list[dict[CborKey, CborValue]]:
    group = dcc.get(kind)
    if not isinstance(group, list):
        return []
    return [entry for entry in group if isinstance(entry, dict)]


def _completed_vaccination(entry: Mapping[CborKey, CborValue], today: date) -> bool:
    dose, series = entry.get("dn"), entry.get("sd")
    when = _date(entry.get("dt"))
    if not isinstance(dose, int) or not isinstance(series, int) or isinstance(dose, bool) or isinstance(series, bool):
        return False
    return dose >= series >= 1 and when is not None and when <= today


def _valid_recovery(entry: Mapping[CborKey, CborValue], today: date) -> bool:
    valid_from, valid_until = _date(entry.get("df")), _date(entry.get("du"))
    return valid_from is not None and valid_until is not None and valid_from <= today <= valid_until


def _test(entries: list[dict[CborKey, CborValue]], now: datetime) -> tuple[datetime | None, TestResult]:
    """The latest judgeable test: any positive result wins; only accepted test types count as negative."""
    latest: tuple[datetime | None, TestResult] = (None, TestResult.NONE)
    for entry in entries:
        sampled = _instant(entry.get("sc"))
        if sampled is None or sampled > now + SAMPLE_LEEWAY:
            continue
        result = entry.get("tr")
        if result == RESULT_DETECTED:
            # A positive result of any test type is a positive result.
            return sampled, TestResult.POSITIVE
        counts = result == RESULT_NOT_DETECTED and entry.get("tt") in ACCEPTED_TEST_TYPES
        if counts and (latest[0] is None or sampled > latest[0]):
            latest = (sampled, TestResult.NEGATIVE)
    return latest


def dcc_status(dcc: Mapping[CborKey, CborValue], *, now: datetime) -> DccStatus:
    """Map a verified DCC (claim -260 / 1) to the status the venue-class rules judge at ``now``.

    The colour is green (a valid certificate carries no colour) and ``updated_at`` is ``now``: the
    certificate was just verified, so the status is as fresh as it gets.  A completed vaccination series or a
    recovery inside its validity window sets ``vaccinated`` (the immunity proof a rule may require).
    """
    today = now.astimezone(UTC).date()
    tested_at, result = _test(_entries(dcc, "t"), now)
    vaccinated = any(_completed_vaccination(e, today) for e in _entries(dcc, "v")) or any(
        _valid_recovery(e, today) for e in _entries(dcc, "r")
    )
    kind = next((k for k in ("v", "t", "r") if k in dcc), "")
    return DccStatus(HolderStatus(Colour.GREEN, now, tested_at, result, vaccinated), kind)


def decide_dcc_admission(
    rules: Rules, *, venue_class: str, dcc: Mapping[CborKey, CborValue], now: datetime,
    business: DccBusinessRules | None = None, issuer_country: str | None = None,
) -> Decision:
    """The admission decision for a verified DCC at a venue class (same rules, same reasons as native codes).

    A class whose rules name a ``dcc_rule_set`` also applies that business-rule set first: a rule that does not
    give true is ``deny`` / ``dcc_rule_failed`` with the rule's identifier as ``rule_id``; a named set that is not
    imported is ``deny`` / ``dcc_rules_unavailable`` (fail closed: the venue asked for rules nobody can apply).
    """
    status = dcc_status(dcc, now=now).status
    rule = rules.for_class(venue_class)
    if rule is not None and status.test_result is TestResult.POSITIVE:
        # A native holder who tests positive turns red; a DCC holder's positive test is refused at every
        # venue class, not only where a negative test is required.
        return Decision(Action.DENY, Reason.TEST_POSITIVE, f"{rule.venue_class}.test", rules.version)
    if rule is not None and rule.dcc_rule_set is not None:
        rule_set = None if business is None else business.rule_sets.get(rule.dcc_rule_set)
        if business is None or rule_set is None:
            return Decision(Action.DENY, DCC_RULES_UNAVAILABLE, f"{rule.venue_class}.dcc_rules", rules.version)
        verdict = apply_rule_set(rule_set, dcc_to_json(dict(dcc)), at=now, value_sets=business.value_sets,
                                 issuer_country=issuer_country)
        if not verdict.passed and verdict.failed_rule is not None:
            return Decision(Action.DENY, DCC_RULE_FAILED, verdict.failed_rule, rules.version)
    return decide_admission(rules, venue_class=venue_class, signed_colour=Colour.GREEN, status=status, now=now)
