"""Admission rules per venue class, loaded from TOML and validated at load (nothing is checked lazily)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

from policy.dcc_rules import RULE_SET_NAME
from policy.errors import RulesError

__all__ = ["FEVER_THRESHOLD_RANGE", "Action", "ClassRule", "Rules", "load_rules", "parse_rules"]


class Action(StrEnum):
    ADMIT = "admit"
    DENY = "deny"
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class ClassRule:
    """What one venue class requires beyond a green code."""

    venue_class: str
    name: str
    test_within_h: int | None
    negative_test_required: bool
    vaccination_required: bool
    on_unknown: Action
    on_degraded: Action
    # The EU DCC business-rule set an HC1 certificate must also pass here (docs/dcc.md "Rule sets"); None: none.
    dcc_rule_set: str | None = None
    fever_threshold_c: float = 37.3  # issue 18: a sentry's reading at or above it is a fever (policy/temperature.py)


@dataclass(frozen=True, slots=True)
class Rules:
    version: str
    status_max_age_h: int
    classes: Mapping[str, ClassRule]

    def for_class(self, venue_class: str) -> ClassRule | None:
        return self.classes.get(venue_class)


_TOP_KEYS = {"version", "status_max_age_h", "classes"}
_CLASS_KEYS = {"name", "test_within_h", "negative_test_required", "vaccination_required", "on_unknown", "on_degraded"}
_CLASS_KEYS |= {"dcc_rule_set", "fever_threshold_c"}
# A fever threshold outside this range would call every healthy person feverish, or no feverish one.
FEVER_THRESHOLD_RANGE = (36.0, 40.0)


def _int(value: object, what: str, *, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RulesError(f"{what} must be an integer in [{low}, {high}]")
    return value


def _threshold(value: object, what: str) -> float:
    low, high = FEVER_THRESHOLD_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RulesError(f"{what} must be a number of degrees Celsius in [{low}, {high}]")
    return float(value)


def _action(value: object, what: str) -> Action:
    try:
        return Action(str(value))
    except ValueError:
        raise RulesError(f"{what} must be one of admit, deny, review") from None


def _rule_set_name(value: object, venue_class: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or RULE_SET_NAME.fullmatch(value) is None:
        raise RulesError(f"class {venue_class}: dcc_rule_set must be a rule-set name (letters, digits, - or _)")
    return value


def parse_rules(data: Mapping[str, Any]) -> Rules:
    """Validate a decoded rules document.

    :raises RulesError: on unknown keys, wrong types, out-of-range hours or an empty class table.
    """
    if unknown := set(data) - _TOP_KEYS:
        raise RulesError(f"unknown keys {sorted(unknown)}")
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise RulesError("version must be a non-empty string")
    max_age = _int(data.get("status_max_age_h"), "status_max_age_h", low=1, high=24 * 30)
    classes_raw = data.get("classes")
    if not isinstance(classes_raw, dict) or not classes_raw:
        raise RulesError("classes must be a non-empty table")
    classes: dict[str, ClassRule] = {}
    for venue_class, raw in classes_raw.items():
        if not (len(venue_class) == 1 and venue_class.isascii() and venue_class.isupper()):
            raise RulesError("a venue class is one upper-case letter")
        if not isinstance(raw, dict):
            raise RulesError(f"class {venue_class} must be a table")
        if unknown := set(raw) - _CLASS_KEYS:
            raise RulesError(f"class {venue_class}: unknown keys {sorted(unknown)}")
        within = raw.get("test_within_h")
        negative = raw.get("negative_test_required", False)
        vaccination = raw.get("vaccination_required", False)
        if not isinstance(negative, bool) or not isinstance(vaccination, bool):
            raise RulesError(f"class {venue_class}: flags must be booleans")
        if negative and within is None:
            raise RulesError(f"class {venue_class}: negative_test_required needs test_within_h")
        classes[venue_class] = ClassRule(
            venue_class=venue_class,
            name=str(raw.get("name", venue_class)),
            test_within_h=None if within is None else _int(within, "test_within_h", low=1, high=24 * 30),
            negative_test_required=negative,
            vaccination_required=vaccination,
            on_unknown=_action(raw.get("on_unknown", "review"), "on_unknown"),
            on_degraded=_action(raw.get("on_degraded", "review"), "on_degraded"),
            dcc_rule_set=_rule_set_name(raw.get("dcc_rule_set"), venue_class),
            fever_threshold_c=_threshold(raw.get("fever_threshold_c", 37.3), "fever_threshold_c"),
        )
    return Rules(version=version, status_max_age_h=max_age, classes=classes)


def load_rules(text: str | None = None) -> Rules:
    """Parse rules TOML text; ``None`` loads the packaged defaults.

    :raises RulesError: on a TOML syntax error or failed validation.
    """
    if text is None:
        text = resources.files("policy").joinpath("default_rules.toml").read_text("utf-8")
    try:
        return parse_rules(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules are not valid TOML: {exc}") from None
