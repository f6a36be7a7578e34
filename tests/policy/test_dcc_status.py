"""DCC entries mapped to the status the venue-class rules judge; explicit ``now``, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crypto.cbor import CborKey, CborTag
from policy.dcc_status import RAT, dcc_status, decide_dcc_admission
from policy.rules import load_rules
from policy.status import TestResult

NOW = datetime(2021, 9, 1, 12, 0, tzinfo=UTC)
RULES = load_rules()
BASE: dict[CborKey, Any] = {"ver": "1.3.0", "nam": {"fnt": "X"}, "dob": "1990"}


def _iso(delta: timedelta) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def vaccination(dn: int = 2, sd: int = 2, dt: str = "2021-05-29") -> dict[CborKey, Any]:
    entry = {"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": dn,
             "sd": sd, "dt": dt, "co": "DE", "is": "RKI", "ci": "URN:UVCI:01DE/V#1"}
    return {**BASE, "v": [entry]}


def lab_result(sc: Any, tr: str = "260415000", tt: str = "LP6464-4") -> dict[CborKey, Any]:
    entry = {"tg": "840539006", "tt": tt, "sc": sc, "tr": tr, "co": "DE", "is": "RKI", "ci": "URN:UVCI:01DE/T#1"}
    return {**BASE, "t": [entry]}


def recovery(df: str = "2021-06-01", du: str = "2021-12-01") -> dict[CborKey, Any]:
    entry = {"tg": "840539006", "fr": "2021-05-15", "co": "DE", "is": "RKI", "df": df, "du": du,
             "ci": "URN:UVCI:01DE/R#1"}
    return {**BASE, "r": [entry]}


@pytest.mark.parametrize(
    ("dcc", "venue_class", "action", "reason"),
    [
        (vaccination(), "C", "admit", "ok"),
        (vaccination(), "A", "deny", "test_missing"),
        (vaccination(dn=1, sd=2), "C", "admit", "ok"),  # class C needs a green code only
        (lab_result(_iso(timedelta(hours=-5))), "A", "admit", "ok"),
        (lab_result(_iso(timedelta(hours=-60))), "A", "deny", "test_too_old"),
        (lab_result(_iso(timedelta(hours=-60))), "B", "admit", "ok"),
        (lab_result(_iso(timedelta(hours=-80))), "B", "deny", "test_too_old"),
        (lab_result(_iso(timedelta(hours=-5)), tr="260373001"), "A", "deny", "test_positive"),
        (lab_result(_iso(timedelta(hours=-5)), tr="260373001"), "C", "deny", "test_positive"),
        (lab_result(_iso(timedelta(hours=-5)), tr="260373001", tt=RAT), "B", "deny", "test_positive"),
        (lab_result(_iso(timedelta(hours=-5)), tt=RAT), "A", "deny", "test_missing"),  # a negative RAT is no NAAT
        (lab_result(_iso(timedelta(hours=2))), "A", "deny", "test_missing"),  # sampled in the future
        (lab_result("yesterday"), "A", "deny", "test_missing"),
        (lab_result(CborTag(0, _iso(timedelta(hours=-5)))), "A", "admit", "ok"),
        (lab_result(CborTag(1, int((NOW - timedelta(hours=5)).timestamp()))), "A", "admit", "ok"),
        (lab_result("2021-09-01T07:00:00"), "A", "admit", "ok"),  # no offset: read as UTC
        (lab_result(_iso(timedelta(hours=-5)), tr="260415000-x"), "A", "deny", "test_missing"),
        (recovery(), "C", "admit", "ok"),
        (vaccination(), "Z", "deny", "unknown_venue_class"),
    ],
)
def test_dcc_decision_table(dcc: dict[CborKey, Any], venue_class: str, action: str, reason: str) -> None:
    decision = decide_dcc_admission(RULES, venue_class=venue_class, dcc=dcc, now=NOW)
    assert (decision.action.value, decision.reason) == (action, reason)
    assert decision.rules_version == RULES.version and not decision.degraded
    assert decide_dcc_admission(RULES, venue_class=venue_class, dcc=dcc, now=NOW) == decision


@pytest.mark.parametrize(
    ("dcc", "vaccinated"),
    [
        (vaccination(), True),
        (vaccination(dn=3, sd=2), True),  # booster
        (vaccination(dn=1, sd=2), False),
        (vaccination(dt="2021-09-02"), False),  # dose after now
        (vaccination(dt="not a date"), False),
        (recovery(), True),
        (recovery(df="2021-09-02"), False),
        (recovery(du="2021-08-31"), False),
        (lab_result(_iso(timedelta(hours=-5))), False),
    ],
)
def test_vaccination_and_recovery_set_the_immunity_flag(dcc: dict[CborKey, Any], vaccinated: bool) -> None:
    assert dcc_status(dcc, now=NOW).status.vaccinated is vaccinated


def test_status_is_green_fresh_and_names_its_entry_type() -> None:
    mapped = dcc_status(lab_result(_iso(timedelta(hours=-5))), now=NOW)
    assert mapped.entry_type == "t"
    assert mapped.status.updated_at == NOW and mapped.status.colour.label == "green"
    assert mapped.status.test_result is TestResult.NEGATIVE
    assert mapped.status.tested_at == NOW - timedelta(hours=5)


def test_latest_negative_test_counts_and_any_positive_wins() -> None:
    older, newer = lab_result(_iso(timedelta(hours=-70)))["t"][0], lab_result(_iso(timedelta(hours=-3)))["t"][0]
    both = {**BASE, "t": [older, newer]}
    assert dcc_status(both, now=NOW).status.tested_at == NOW - timedelta(hours=3)
    positive = {**lab_result(_iso(timedelta(hours=-90)), tr="260373001")["t"][0]}
    assert dcc_status({**BASE, "t": [newer, positive]}, now=NOW).status.test_result is TestResult.POSITIVE
