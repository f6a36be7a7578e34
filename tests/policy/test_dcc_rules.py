"""EU DCC business-rule sets: parsing published rules, choosing the rules in force, applying a set, and the
venue rules file naming a set. The public EU template rules are read from ../shared/conformance where they lie."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from policy.admission import Action
from policy.dcc_rules import (
    RULE_MAX_STEPS,
    DccBusinessRules,
    DccRuleError,
    apply_rule_set,
    parse_rule,
    parse_rule_set,
)
from policy.dcc_status import decide_dcc_admission
from policy.errors import RulesError
from policy.rules import load_rules
from tests.crypto.conftest import VACCINATION_DCC

REPO = Path(__file__).resolve().parents[2]
RULES = REPO.parent / "shared" / "conformance" / "dcc-rules-testdata"
needs_rules = pytest.mark.skipif(not RULES.is_dir(), reason="shared/conformance/dcc-rules-testdata absent")
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _rule(identifier: str = "VR-XX-0001", logic: Any = True, **changes: Any) -> dict[str, Any]:
    doc = {"Identifier": identifier, "Type": "Acceptance", "Country": "XX", "Version": "1.0.0",
           "SchemaVersion": "1.0.0", "Engine": "CERTLOGIC", "EngineVersion": "0.7.5", "CertificateType": "General",
           "Description": [{"lang": "en", "desc": "test"}], "ValidFrom": "2021-06-01T00:00:00Z",
           "ValidTo": "2030-06-01T00:00:00Z", "AffectedFields": [], "Logic": logic}  # fmt: skip
    doc.update(changes)
    return doc


DOSES = {">=": [{"var": "payload.v.0.dn"}, {"var": "payload.v.0.sd"}]}


def _vaccination(**changes: Any) -> dict[str, Any]:
    dcc = copy.deepcopy(VACCINATION_DCC)
    dcc["v"][0].update(dt=(NOW - timedelta(days=30)).date().isoformat(), **changes)
    return dcc


@pytest.mark.parametrize(
    "doc",
    [
        _rule("XR-XX-0001"),
        _rule(Engine="JSONLOGIC"),
        _rule(Version="1.0"),
        _rule(Type="Other"),
        _rule(ValidTo="2021-01-01T00:00:00Z"),
        _rule(ValidFrom="yesterday"),
        _rule(logic={"nope": [1]}),
        _rule(logic={"var": "x."}),
        _rule(logic=json.loads("[" * 70 + "]" * 70)),  # past the depth bound
        "not a rule",
    ],
)
def test_a_rule_that_could_not_be_applied_faithfully_is_refused(doc: Any) -> None:
    with pytest.raises(DccRuleError) as caught:
        parse_rule(doc)
    assert caught.value.code == "invalid_dcc_rule"


def test_a_rule_set_needs_a_name_rules_and_one_copy_of_each_version() -> None:
    with pytest.raises(DccRuleError):
        parse_rule_set("bad name!", [_rule()])
    with pytest.raises(DccRuleError):
        parse_rule_set("CITY", [])
    with pytest.raises(DccRuleError):
        parse_rule_set("CITY", [_rule(), _rule()])


def test_the_highest_version_in_force_decides_and_other_rules_are_left_out() -> None:
    rule_set = parse_rule_set("CITY", [
        _rule(logic=False),  # 1.0.0 would fail
        _rule(logic=DOSES, Version="1.1.0"),
        _rule("VR-XX-0002", logic=False, ValidFrom="2027-01-01T00:00:00Z"),  # not yet in force
        _rule("VR-XX-0003", logic=False, ValidTo="2026-01-01T00:00:00Z"),  # no longer in force
        _rule("VR-XX-0004", logic=True, Type="Invalidation", Country="YY"),  # another issuer's
    ])  # fmt: skip
    assert apply_rule_set(rule_set, _vaccination(), at=NOW, value_sets={}).passed
    verdict = apply_rule_set(rule_set, _vaccination(dn=1), at=NOW, value_sets={})
    assert (verdict.passed, verdict.failed_rule, verdict.applied) == (False, "VR-XX-0001", 1)


def test_an_invalidation_rule_of_the_issuing_country_that_gives_true_invalidates() -> None:
    revoked = {"===": [{"var": "payload.v.0.ci"}, VACCINATION_DCC["v"][0]["ci"]]}
    rule_set = parse_rule_set("CITY", [
        _rule(logic=True),
        _rule("IR-DE-0001", logic=revoked, Type="Invalidation", Country="DE"),
        _rule("IR-DE-0002", logic={"in": [1, {"var": "payload.dob"}]}, Type="Invalidation", Country="DE"),  # errors
    ])  # fmt: skip
    verdict = apply_rule_set(rule_set, _vaccination(), at=NOW, value_sets={}, issuer_country="DE")
    assert (verdict.passed, verdict.failed_rule) == (False, "IR-DE-0001")
    assert apply_rule_set(rule_set, _vaccination(ci="URN:UVCI:01DE/OTHER#1"), at=NOW, value_sets={},
                          issuer_country="DE").passed
    assert apply_rule_set(rule_set, _vaccination(), at=NOW, value_sets={}, issuer_country="AT").passed


def test_a_rule_that_errors_or_gives_a_non_true_value_fails() -> None:
    erroring = parse_rule_set("CITY", [_rule(logic={"in": ["x", {"var": "payload.dob"}]})])  # not an array
    assert apply_rule_set(erroring, _vaccination(), at=NOW, value_sets={}).failed_rule == "VR-XX-0001"
    truthy = parse_rule_set("CITY", [_rule(logic={"var": "payload.dob"})])  # a string, not true
    assert not apply_rule_set(truthy, _vaccination(), at=NOW, value_sets={}).passed


def test_a_rule_over_a_huge_payload_fails_within_its_step_budget() -> None:
    count = {"reduce": [{"var": "payload.v"}, {"+": [{"var": "accumulator"}, 1]}, 0]}
    rule_set = parse_rule_set("CITY", [_rule(logic={">=": [count, 0]})])
    assert apply_rule_set(rule_set, {"v": [{}] * 100}, at=NOW, value_sets={}).passed
    huge = {"v": [{}] * (RULE_MAX_STEPS + 1)}
    assert apply_rule_set(rule_set, huge, at=NOW, value_sets={}).failed_rule == "VR-XX-0001"


def test_rules_read_the_validation_clock_the_country_and_the_value_sets() -> None:
    logic = {"and": [
        {"===": [{"var": "external.countryCode"}, "XX"]},
        {"in": [{"var": "payload.v.0.mp"}, {"var": "external.valueSets.vaccines-covid-19-names"}]},
        {"before": [{"plusTime": [{"var": "payload.v.0.dt"}, 0, "day"]},
                    {"plusTime": [{"var": "external.validationClock"}, 0, "day"]}]},
    ]}  # fmt: skip
    rule_set = parse_rule_set("CITY", [_rule(logic=logic)])
    assert apply_rule_set(rule_set, _vaccination(), at=NOW, value_sets={"vaccines-covid-19-names": ["EU/1/20/1528"]})
    assert not apply_rule_set(rule_set, _vaccination(), at=NOW, value_sets={}).passed


@needs_rules
def test_the_eu_template_rules_judge_a_certificate_and_name_the_failed_rule() -> None:
    docs = [json.loads(path.read_text("utf-8")) for path in sorted((RULES / "EU").glob("*/rule.json"))]
    rule_set = parse_rule_set("EU", docs)
    value_sets = json.loads((RULES / "valuesets" / "valueSets.json").read_text("utf-8"))
    assert apply_rule_set(rule_set, _vaccination(), at=NOW, value_sets=value_sets).passed
    incomplete = apply_rule_set(rule_set, _vaccination(dn=1), at=NOW, value_sets=value_sets)
    assert incomplete.failed_rule == "VR-EU-0002"
    # Without value sets the EU rules cannot confirm COVID-19 as the disease targeted.
    assert apply_rule_set(rule_set, _vaccination(), at=NOW, value_sets={}).failed_rule == "GR-EU-0001"


_TOML = """
version = "t1"
status_max_age_h = 24
[classes.C]
name = "offices"
on_unknown = "review"
on_degraded = "admit"
{extra}
"""


def test_a_venue_class_names_its_rule_set_and_the_decision_names_the_failed_rule() -> None:
    rules = load_rules(_TOML.format(extra='dcc_rule_set = "CITY"'))
    assert rules.classes["C"].dcc_rule_set == "CITY"
    business = DccBusinessRules({"CITY": parse_rule_set("CITY", [_rule(logic=DOSES)])}, {})
    ok = decide_dcc_admission(rules, venue_class="C", dcc=_vaccination(), now=NOW, business=business)
    assert (ok.action, ok.reason) == (Action.ADMIT, "ok")
    failed = decide_dcc_admission(rules, venue_class="C", dcc=_vaccination(dn=1), now=NOW, business=business)
    assert (failed.action, failed.reason, failed.rule_id) == (Action.DENY, "dcc_rule_failed", "VR-XX-0001")


def test_a_rule_set_a_class_names_but_nobody_imported_fails_closed() -> None:
    rules = load_rules(_TOML.format(extra='dcc_rule_set = "CITY"'))
    for business in (None, DccBusinessRules({}, {})):
        decision = decide_dcc_admission(rules, venue_class="C", dcc=_vaccination(), now=NOW, business=business)
        assert (decision.action, decision.reason, decision.rule_id) == (Action.DENY, "dcc_rules_unavailable",
                                                                        "C.dcc_rules")


def test_a_class_without_a_rule_set_applies_none() -> None:
    rules = load_rules(_TOML.format(extra=""))
    decision = decide_dcc_admission(rules, venue_class="C", dcc=_vaccination(dn=1), now=NOW, business=None)
    assert decision.reason == "ok"


@pytest.mark.parametrize("value", ['"bad name!"', "3", '""'])
def test_a_rules_file_naming_a_malformed_rule_set_is_refused(value: str) -> None:
    with pytest.raises(RulesError):
        load_rules(_TOML.format(extra=f"dcc_rule_set = {value}"))


@needs_rules
def test_every_published_rule_set_is_accepted_as_a_rule_set() -> None:
    counts = {}
    for folder in sorted(path for path in RULES.iterdir() if path.is_dir() and any(path.glob("*/rule.json"))):
        docs = [json.loads(path.read_text("utf-8")) for path in sorted(folder.glob("*/rule.json"))]
        counts[folder.name] = len(parse_rule_set(folder.name, docs).rules)
    assert counts == {"AT": 16, "CY": 17, "DE": 11, "EU": 14, "FR": 15, "IE": 16, "PL": 13}
