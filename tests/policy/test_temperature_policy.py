"""Body temperatures (issue 18): the accepted range, and the fever threshold per venue class from the rules."""

from __future__ import annotations

import pytest

from policy.admission import Decision
from policy.errors import RulesError
from policy.rules import Action, load_rules
from policy.temperature import InvalidTemperatureError, apply_temperature, check_temperature

RULES = load_rules()
ADMIT = Decision(Action.ADMIT, "ok", "C.ok", RULES.version)


@pytest.mark.parametrize("reading", [30, 30.0, 36.6, 45, 45.0])
def test_readings_from_30_to_45_are_taken(reading: float) -> None:
    assert check_temperature(reading) == float(reading)


@pytest.mark.parametrize("reading", [29.99, 45.01, float("nan"), float("inf"), "36.6", True, None, [36.6]])
def test_anything_else_is_refused_with_a_stable_code(reading: object) -> None:
    with pytest.raises(InvalidTemperatureError) as caught:
        check_temperature(reading)
    assert caught.value.code == "invalid_temperature"


@pytest.mark.parametrize(("reading", "reason"), [(37.2, "ok"), (37.3, "fever"), (40.0, "fever"), (None, "ok")])
def test_the_default_threshold_is_37_3(reading: float | None, reason: str) -> None:
    decided = apply_temperature(RULES, ADMIT, venue_class="C", temperature_c=reading)
    assert decided.reason == reason
    if reason == "fever":
        assert (decided.action, decided.rule_id) == (Action.DENY, "C.temperature")


def test_a_fever_keeps_the_degraded_flag_and_an_unknown_class_is_left_alone() -> None:
    degraded = Decision(Action.REVIEW, "status_unavailable", "C.degraded", RULES.version, degraded=True)
    assert apply_temperature(RULES, degraded, venue_class="C", temperature_c=39.0).degraded
    assert apply_temperature(RULES, ADMIT, venue_class="Z", temperature_c=39.0) == ADMIT


def test_the_rules_file_sets_a_threshold_per_class_within_36_to_40() -> None:
    rules = load_rules('version = "t"\nstatus_max_age_h = 24\n[classes.A]\nfever_threshold_c = 37.8\n[classes.B]\n')
    assert rules.classes["A"].fever_threshold_c == 37.8 and rules.classes["B"].fever_threshold_c == 37.3
    for bad in ("35.9", "40.1", '"37"', "true"):
        with pytest.raises(RulesError):
            load_rules(f'version = "t"\nstatus_max_age_h = 24\n[classes.A]\nfever_threshold_c = {bad}\n')
