"""A body temperature measured by a digital sentry (issue 18): what a reading may be, and when it is a fever.

A reading outside 30.0-45.0 °C is not a human body's: a sensor fault or a typo, refused (HTTP 400
``invalid_temperature``) rather than decided on. At or above the venue class's fever threshold (rules file
``fever_threshold_c``, default 37.3 °C) the presentation is denied with reason ``fever`` whatever the code said:
the person needs the community health service before anything else (docs/operations.md "Digital sentry").

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import ClassVar

from policy.admission import Decision, Reason
from policy.rules import Action, Rules

__all__ = [
    "MAX_TEMPERATURE_C", "MIN_TEMPERATURE_C", "InvalidTemperatureError", "apply_temperature", "check_temperature",
]

MIN_TEMPERATURE_C = 30.0
MAX_TEMPERATURE_C = 45.0


class InvalidTemperatureError(ValueError):
    code: ClassVar[str] = "invalid_temperature"


def check_temperature(value: object) -> float:
    """A JSON number in [30.0, 45.0] as a float.

    :raises InvalidTemperatureError: not a number (a boolean is not), not finite, or outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTemperatureError("temperature_c must be a number")
    reading = float(value)
    if not (math.isfinite(reading) and MIN_TEMPERATURE_C <= reading <= MAX_TEMPERATURE_C):
        raise InvalidTemperatureError("temperature_c must be within 30.0-45.0")
    return reading


def apply_temperature(rules: Rules, decision: Decision, *, venue_class: str, temperature_c: float | None) -> Decision:
    """The decision once the reading is known: a fever at or above the class's threshold denies (reason
    ``fever``, rule ``<class>.temperature``), keeping the decision's degraded flag; anything else leaves it."""
    if temperature_c is None:
        return decision
    rule = rules.for_class(venue_class)
    if rule is None or temperature_c < rule.fever_threshold_c:
        return decision
    return replace(decision, action=Action.DENY, reason=Reason.FEVER, rule_id=f"{rule.venue_class}.temperature")
