"""The admission decision, table-driven with an explicit ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crypto.native import Colour
from policy.admission import Decision, decide_admission, refuse
from policy.errors import RulesError
from policy.rules import Action, load_rules
from policy.status import HolderStatus, TestResult

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
RULES = load_rules()
G, Y, R = Colour.GREEN, Colour.YELLOW, Colour.RED
NEG, POS, NONE = TestResult.NEGATIVE, TestResult.POSITIVE, TestResult.NONE


def _status(colour: Colour = G, tested_h: float | None = 1, result: TestResult = NEG, age_h: float = 0,
            vaccinated: bool = False) -> HolderStatus:
    tested = None if tested_h is None else NOW - timedelta(hours=tested_h)
    return HolderStatus(colour, NOW - timedelta(hours=age_h), tested, result if tested else NONE, vaccinated)


@pytest.mark.parametrize(
    ("venue", "signed", "status", "action", "reason", "rule_id"),
    [
        ("A", G, _status(), "admit", "ok", "A.ok"),
        ("A", G, _status(tested_h=48), "admit", "ok", "A.ok"),
        ("A", G, _status(tested_h=48.01), "deny", "test_too_old", "A.test"),
        ("A", G, _status(tested_h=None), "deny", "test_missing", "A.test"),
        ("A", G, _status(result=POS), "deny", "test_positive", "A.test"),
        ("B", G, _status(tested_h=71.9), "admit", "ok", "B.ok"),
        ("B", G, _status(tested_h=72.1), "deny", "test_too_old", "B.test"),
        ("C", G, _status(tested_h=None), "admit", "ok", "C.ok"),
        ("C", G, _status(R), "deny", "status_red", "C.colour"),
        ("C", G, _status(Y), "deny", "status_yellow", "C.colour"),
        # The colour signed into the code also counts: a red code is never admitted on a green cache entry.
        ("C", R, _status(), "deny", "status_red", "C.colour"),
        ("C", Y, _status(), "deny", "status_yellow", "C.colour"),
        ("A", G, None, "deny", "status_unknown", "A.status"),
        ("B", G, None, "review", "status_unknown", "B.status"),
        ("C", G, _status(age_h=25), "review", "status_unknown", "C.status"),
        ("Z", G, _status(), "deny", "unknown_venue_class", "venue_class"),
    ],
)
def test_decisions(venue: str, signed: Colour, status: HolderStatus | None, action: str, reason: str,
                   rule_id: str) -> None:
    got = decide_admission(RULES, venue_class=venue, signed_colour=signed, status=status, now=NOW)
    assert (got.action.value, got.reason, got.rule_id, got.rules_version, got.degraded) == (
        action, reason, rule_id, RULES.version, False)


@pytest.mark.parametrize(
    ("venue", "signed", "action", "reason"),
    [("A", G, "deny", "status_unavailable"), ("B", G, "review", "status_unavailable"), ("C", G, "admit", "ok"),
     ("C", R, "deny", "status_red"), ("C", Y, "deny", "status_yellow")],
)
def test_degraded_mode_uses_the_signed_colour_and_says_so(venue: str, signed: Colour, action: str,
                                                          reason: str) -> None:
    got = decide_admission(RULES, venue_class=venue, signed_colour=signed, status=None, now=NOW,
                           status_available=False)
    assert (got.action.value, got.reason, got.degraded) == (action, reason, True)


def test_same_inputs_same_decision() -> None:
    args = {"venue_class": "A", "signed_colour": G, "status": _status(tested_h=30), "now": NOW}
    assert decide_admission(RULES, **args) == decide_admission(RULES, **args)  # type: ignore[arg-type]


def test_refusal_carries_reason_and_rules_version() -> None:
    assert refuse(RULES, "bad_signature") == Decision(Action.DENY, "bad_signature", "code", RULES.version)


def test_vaccination_rule() -> None:
    rules = load_rules('version = "v"\nstatus_max_age_h = 24\n[classes.D]\nvaccination_required = true\n')
    no = decide_admission(rules, venue_class="D", signed_colour=G, status=_status(), now=NOW)
    yes = decide_admission(rules, venue_class="D", signed_colour=G, status=_status(vaccinated=True), now=NOW)
    assert (no.reason, yes.reason) == ("not_vaccinated", "ok")


@pytest.mark.parametrize(
    "text",
    [
        "not toml [",
        'status_max_age_h = 24\n[classes.A]\n',
        'version = "v"\nstatus_max_age_h = 0\n[classes.A]\n',
        'version = "v"\nstatus_max_age_h = 24\n',
        'version = "v"\nstatus_max_age_h = 24\n[classes.A]\ncolor = "green"\n',
        'version = "v"\nstatus_max_age_h = 24\nextra = 1\n[classes.A]\n',
        'version = "v"\nstatus_max_age_h = 24\n[classes.a]\n',
        'version = "v"\nstatus_max_age_h = 24\n[classes.A]\non_unknown = "maybe"\n',
        'version = "v"\nstatus_max_age_h = 24\n[classes.A]\nnegative_test_required = true\n',
        'version = "v"\nstatus_max_age_h = 24\n[classes.A]\ntest_within_h = "48"\n',
    ],
)
def test_invalid_rules_are_refused_at_load(text: str) -> None:
    with pytest.raises(RulesError) as info:
        load_rules(text)
    assert info.value.code == "invalid_rules"
