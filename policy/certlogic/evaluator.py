"""The CertLogic evaluator (eu-dcc-business-rules, certlogic/specification/README.md, version 1.3.3).

An interpreter over the expression's JSON, with no ``eval`` and no code generation: the expression is checked
against its bounds and validated first (the specification: "checks the validity of the expression first, before
evaluating any of its operands"), then walked.  Every evaluation step counts against a budget, so a ``reduce``
over a large array inside another cannot run for ever.  Type mismatches found while evaluating raise
``CertLogicError`` as the specification allows.
"""

from __future__ import annotations

import re
from typing import Final, cast

from policy.certlogic.errors import CertLogicError, CertLogicTooCostlyError
from policy.certlogic.validator import INFIX_OPERATORS, validate
from policy.certlogic.values import (
    DateTime,
    Json,
    TimeUnit,
    Value,
    boolsiness,
    date_of_birth,
    is_int,
    parse_date_time,
    plus_time,
    strictly_equal,
)

__all__ = ["MAX_STEPS", "evaluate", "extract_from_uvci"]

MAX_STEPS: Final = 200_000  # evaluation steps; a real rule over a real certificate takes a few hundred
_LEADING_INT: Final = re.compile(r"\s*([+-]?\d+)", re.ASCII)
_UVCI_PREFIX: Final = "URN:UVCI:"
_UVCI_SEPARATORS: Final = re.compile(r"[/#:]")
_DATE_COMPARISONS: Final = {"after": ">", "before": "<", "not-after": "<=", "not-before": ">="}


def _access(data: Value, path: str) -> Value:
    """``var``: drill into the data context; anything missing, or inside ``null``, is ``null``."""
    if path == "":
        return data
    current = data
    for fragment in path.split("."):
        if current is None:
            return None
        # JavaScript reads a fragment with parseInt: a leading integer indexes, anything else names a property.
        match = _LEADING_INT.match(fragment)
        if isinstance(current, list):
            index = int(match[1]) if match else -1
            current = current[index] if 0 <= index < len(current) else None
        elif isinstance(current, dict):
            current = current.get(str(int(match[1])) if match else fragment)
        elif isinstance(current, str) and match and 0 <= int(match[1]) < len(current):
            current = current[int(match[1])]
        else:
            return None
    return current


def extract_from_uvci(uvci: str | None, index: int) -> str | None:
    """``extractFromUVCI``: the ``index``-th fragment between ``/``, ``#`` and ``:``, after an optional
    ``URN:UVCI:`` prefix; ``null`` when there is no such fragment."""
    if uvci is None or index < 0:
        return None
    text = uvci[len(_UVCI_PREFIX):] if uvci.startswith(_UVCI_PREFIX) else uvci
    fragments = _UVCI_SEPARATORS.split(text)
    return fragments[index] if index < len(fragments) else None


def _compare(operator: str, values: list[Value]) -> bool:
    def holds(left: int | float, right: int | float) -> bool:
        if operator == "<":
            return left < right
        if operator == ">":
            return left > right
        if operator == "<=":
            return left <= right
        return left >= right

    numbers = [value.ms if isinstance(value, DateTime) else cast(float, value) for value in values]
    return all(holds(numbers[i], numbers[i + 1]) for i in range(len(numbers) - 1))


class _Evaluation:
    """One evaluation: the step budget it spends."""

    def __init__(self, max_steps: int) -> None:
        self.steps_left = max_steps

    def run(self, expr: Json, data: Value) -> Value:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise CertLogicTooCostlyError("evaluation over its step budget")
        if isinstance(expr, str | bool | int | float):
            return expr  # validated: integers only
        if isinstance(expr, list):
            return [self.run(item, data) for item in expr]
        if not isinstance(expr, dict):
            raise CertLogicError("invalid CertLogic expression")
        ((operator, values),) = expr.items()
        if operator == "var":
            return _access(data, cast(str, values))
        operands = cast(list[Json], values)
        if operator == "if":
            return self._if(operands, data)
        if operator in INFIX_OPERATORS:
            return self._infix(operator, operands, data)
        if operator == "!":
            truth = boolsiness(self.run(operands[0], data))
            if truth is None:
                raise CertLogicError("operand of ! is neither truthy nor falsy")
            return not truth
        if operator == "plusTime":
            text = self.run(operands[0], data)
            if not isinstance(text, str):
                raise CertLogicError('date argument of "plusTime" must be a string')
            return plus_time(parse_date_time(text), int(cast(int, operands[1])), cast(TimeUnit, operands[2]))
        if operator == "dccDateOfBirth":
            text = self.run(operands[0], data)
            if not isinstance(text, str):
                raise CertLogicError('operand of "dccDateOfBirth" must be a string')
            return date_of_birth(text)
        if operator == "reduce":
            return self._reduce(operands, data)
        if operator == "extractFromUVCI":
            uvci = self.run(operands[0], data)
            if uvci is not None and not isinstance(uvci, str):
                raise CertLogicError('"UVCI" argument (#1) of "extractFromUVCI" must be a string or null')
            return extract_from_uvci(uvci, int(cast(int, operands[1])))
        raise CertLogicError(f"unrecognised operator {operator!r}")  # unreachable after validation

    def _if(self, operands: list[Json], data: Value) -> Value:
        truth = boolsiness(self.run(operands[0], data))
        if truth is None:
            raise CertLogicError("if-guard evaluates to something neither truthy nor falsy")
        return self.run(operands[1] if truth else operands[2], data)

    def _infix(self, operator: str, operands: list[Json], data: Value) -> Value:
        if operator == "and":
            # Lazy, in order: the first falsy operand's value, else the last one's.
            result: Value = True
            for operand in operands:
                truth = boolsiness(result)
                if truth is None:
                    raise CertLogicError('all operands of an "and" operation must be truthy or falsy')
                if not truth:
                    return result
                result = self.run(operand, data)
            if boolsiness(result) is None:
                raise CertLogicError('all operands of an "and" operation must be truthy or falsy')
            return result
        values = [self.run(operand, data) for operand in operands]
        if operator == "===":
            return strictly_equal(values[0], values[1])
        if operator == "in":
            haystack = values[1]
            if not isinstance(haystack, list):
                raise CertLogicError('right-hand side of an "in" operation must be an array')
            # A search costs its length: an "in" over the payload inside a reduce over it is quadratic.
            self.steps_left -= len(haystack)
            if self.steps_left < 0:
                raise CertLogicTooCostlyError("evaluation over its step budget")
            return any(strictly_equal(values[0], item) for item in haystack)
        if operator == "+":
            left, right = values
            if not is_int(left) or not is_int(right):
                raise CertLogicError('operands of "+" must both be integers')
            return int(cast(float, left)) + int(cast(float, right))
        if operator in _DATE_COMPARISONS:
            if not all(isinstance(value, DateTime) for value in values):
                raise CertLogicError("all operands of a date-time comparison must be date-times")
            return _compare(_DATE_COMPARISONS[operator], values)
        if not all(is_int(value) for value in values):
            raise CertLogicError("all operands of a comparison must be integers")
        return _compare(operator, values)

    def _reduce(self, operands: list[Json], data: Value) -> Value:
        array = self.run(operands[0], data)
        accumulator = self.run(operands[2], data)
        if array is None:
            return accumulator
        if not isinstance(array, list):
            raise CertLogicError("operand of reduce is neither an array nor null")
        for current in array:
            accumulator = self.run(operands[1], {"accumulator": accumulator, "current": current})
        return accumulator


def evaluate(expr: Json, data: object, *, max_steps: int = MAX_STEPS, validated: bool = False) -> Value:
    """Evaluate a CertLogic expression on a data context (JSON: what ``json.loads`` gives).

    :param validated: the caller already had ``validate`` find no issue in this very expression (a stored rule
        checked at import), so it is not walked again.

    :raises CertLogicError: an invalid expression (before evaluating, or a type mismatch while evaluating);
        ``CertLogicTooDeepError`` / ``CertLogicTooLargeError`` / ``CertLogicTooCostlyError`` over a bound.
    """
    issues = [] if validated else validate(expr)
    if issues:
        raise CertLogicError(issues[0].message)
    return _Evaluation(max_steps).run(expr, cast(Value, data))
