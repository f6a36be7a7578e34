"""EU DCC business-rule sets: EU DCC Gateway validation rules in their public JSON format, and applying a set.

A rule is ``{"Identifier", "Type", "Country", "Version", "Engine": "CERTLOGIC", "CertificateType", "ValidFrom",
"ValidTo", "Logic", ...}``.  Applying a set follows ``validateDcc`` of eu-dcc-business-rules
(dcc-business-rules-utils/src/dcc-validator.ts): the ``Acceptance`` rules whose validity ``[ValidFrom, ValidTo)``
holds the validation time, the highest ``Version`` of each ``Identifier``, each evaluated on
``{"payload": <DCC>, "external": {"validationClock", "countryCode", "valueSets"}}``; the certificate passes when
every one gives ``true``.  ``CertificateType`` does not filter (a rule written for one event type returns true
when the certificate holds none).  An evaluation error fails the rule, as the CertLogic specification advises.  An
``Invalidation`` rule of the issuing country (the CWT ``iss`` claim) in force that gives ``true`` invalidates the
certificate; one that errors does not (it could only invalidate by giving true).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from policy.certlogic import CertLogicError, Json, evaluate, validate
from policy.errors import PolicyError

__all__ = [
    "RULE_MAX_STEPS",
    "RULE_SET_NAME",
    "DccBusinessRules",
    "DccRule",
    "DccRuleError",
    "RuleSet",
    "RuleSetVerdict",
    "apply_rule_set",
    "parse_rule",
    "parse_rule_set",
]

RULE_SET_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # "EU", "AT", "CITY-ACCEPTANCE"
_IDENTIFIER: Final = re.compile(r"(GR|VR|TR|RR|IR)-[A-Z0-9]{1,4}-\d{4}", re.ASCII)
_VERSION: Final = re.compile(r"(\d+)\.(\d+)\.(\d+)", re.ASCII)
_TYPES: Final = frozenset({"Acceptance", "Invalidation"})
MAX_RULES: Final = 1000
# Evaluation steps one rule may take on the scan path: the published rules take at most 81 on their own tests, a
# membership test costs its array's length (the largest value set has 250 codes); a signed but hostile payload
# (a huge array a rule reduces over) must not hold a scan for long.
RULE_MAX_STEPS: Final = 10_000


class DccRuleError(PolicyError):
    """A rule or rule set that is not a usable EU DCC Gateway rule (refused at import, nothing stored)."""

    code = "invalid_dcc_rule"


@dataclass(frozen=True, slots=True)
class DccRule:
    """One validation rule; ``document`` is the rule as published, kept to store and show it unchanged."""

    identifier: str
    type: str
    country: str
    version: tuple[int, int, int]
    valid_from: datetime
    valid_to: datetime
    logic: Json
    document: Mapping[str, Json]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A named set of rules the operator imported (the EU template rules, a country's, the city's own)."""

    name: str
    rules: tuple[DccRule, ...]


@dataclass(frozen=True, slots=True)
class DccBusinessRules:
    """What the scan path applies besides the venue-class rules: the imported rule sets by name and the
    compressed value sets the rules read as ``external.valueSets``."""

    rule_sets: Mapping[str, RuleSet]
    value_sets: Mapping[str, list[str]]


@dataclass(frozen=True, slots=True)
class RuleSetVerdict:
    """The outcome of a set on one certificate: ``failed_rule`` is the first rule (by identifier) not giving true."""

    passed: bool
    failed_rule: str | None
    applied: int


def _instant(value: Json, what: str) -> datetime:
    if not isinstance(value, str):
        raise DccRuleError(f"{what} is not a date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DccRuleError(f"{what} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise DccRuleError(f"{what} has no offset")
    return parsed


def parse_rule(doc: Json) -> DccRule:
    """Check one published rule: its identity, validity range, engine and a valid CertLogic ``Logic``.

    :raises DccRuleError: anything a gateway could not apply faithfully.
    """
    if not isinstance(doc, dict):
        raise DccRuleError("a rule is a JSON object")
    identifier = doc.get("Identifier")
    if not isinstance(identifier, str) or _IDENTIFIER.fullmatch(identifier) is None:
        raise DccRuleError("Identifier is not of the form GR|VR|TR|RR-<country>-NNNN")
    rule_type, country, version = doc.get("Type"), doc.get("Country"), doc.get("Version")
    if rule_type not in _TYPES:
        raise DccRuleError(f"{identifier}: Type is neither Acceptance nor Invalidation")
    if not isinstance(country, str) or not country:
        raise DccRuleError(f"{identifier}: Country is missing")
    match = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise DccRuleError(f"{identifier}: Version is not N.N.N")
    if doc.get("Engine") != "CERTLOGIC":
        raise DccRuleError(f"{identifier}: Engine is not CERTLOGIC")
    valid_from = _instant(doc.get("ValidFrom"), f"{identifier}: ValidFrom")
    valid_to = _instant(doc.get("ValidTo"), f"{identifier}: ValidTo")
    if valid_to <= valid_from:
        raise DccRuleError(f"{identifier}: ValidTo is not after ValidFrom")
    logic = doc.get("Logic")
    try:
        issues = validate(logic)
    except CertLogicError as exc:
        raise DccRuleError(f"{identifier}: Logic {exc.code}") from None
    if issues:
        raise DccRuleError(f"{identifier}: Logic is not valid CertLogic: {issues[0].message}")
    major, minor, patch = (int(part) for part in match.groups())
    return DccRule(identifier, str(rule_type), country, (major, minor, patch), valid_from, valid_to, logic, doc)


def parse_rule_set(name: str, docs: Iterable[Json]) -> RuleSet:
    """A named rule set from published rules.

    :raises DccRuleError: a bad name, a bad rule, no rule, too many, or one version of a rule given twice.
    """
    if RULE_SET_NAME.fullmatch(name) is None:
        raise DccRuleError("a rule-set name is 1-32 letters, digits, - or _")
    rules = tuple(parse_rule(doc) for doc in docs)
    if not rules or len(rules) > MAX_RULES:
        raise DccRuleError(f"a rule set holds 1 to {MAX_RULES} rules")
    seen = {(rule.identifier, rule.version) for rule in rules}
    if len(seen) != len(rules):
        raise DccRuleError("a rule version appears twice")
    return RuleSet(name, tuple(sorted(rules, key=lambda rule: (rule.identifier, rule.version))))


def _in_force(rules: Sequence[DccRule], at: datetime, rule_type: str = "Acceptance") -> list[DccRule]:
    latest: dict[str, DccRule] = {}
    for rule in rules:
        if rule.type != rule_type or not rule.valid_from <= at < rule.valid_to:
            continue
        if rule.identifier not in latest or rule.version > latest[rule.identifier].version:
            latest[rule.identifier] = rule
    return [latest[identifier] for identifier in sorted(latest)]


def _result(rule: DccRule, payload: Json, clock: str, sets: dict[str, Json]) -> object:
    data: dict[str, Json] = {
        "payload": payload,
        "external": {"validationClock": clock, "countryCode": rule.country, "valueSets": sets},
    }
    try:
        return evaluate(rule.logic, data, validated=True, max_steps=RULE_MAX_STEPS)  # validated by parse_rule
    except CertLogicError:
        return None  # the specification: catch the evaluation error; only a true result counts


def apply_rule_set(
    rule_set: RuleSet, payload: Json, *, at: datetime, value_sets: Mapping[str, list[str]],
    issuer_country: str | None = None,
) -> RuleSetVerdict:
    """Apply a rule set to a DCC payload (the hcert JSON) at ``at`` (an aware datetime, the validation clock).

    :param value_sets: the compressed value sets (``external.valueSets``: id -> codes).
    :param issuer_country: the certificate's issuing country (CWT ``iss``); its ``Invalidation`` rules apply.
    """
    rules = _in_force(rule_set.rules, at)
    clock = at.isoformat()
    sets: dict[str, Json] = {key: list(codes) for key, codes in value_sets.items()}
    for rule in rules:
        if _result(rule, payload, clock, sets) is not True:
            return RuleSetVerdict(False, rule.identifier, len(rules))
    invalidations = [rule for rule in _in_force(rule_set.rules, at, "Invalidation") if rule.country == issuer_country]
    for rule in invalidations:
        if _result(rule, payload, clock, sets) is True:
            return RuleSetVerdict(False, rule.identifier, len(rules) + len(invalidations))
    return RuleSetVerdict(True, None, len(rules) + len(invalidations))
