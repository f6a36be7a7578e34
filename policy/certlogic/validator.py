"""The CertLogic format validator: which sub-expressions break the specification, before anything is evaluated.

Issues come in the order the reference validator (certlogic-js ``validateFormat``) reports them, each naming the
offending sub-expression, so the specification's validation test suite can be scored on them.  Size and depth are
checked first, without recursion, so a hostile expression never reaches the recursive walk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from policy.certlogic.errors import CertLogicTooDeepError, CertLogicTooLargeError
from policy.certlogic.values import TIME_UNITS, Json, is_int

__all__ = ["INFIX_OPERATORS", "MAX_DEPTH", "MAX_NODES", "OPERATORS", "Issue", "check_bounds", "validate"]

# Real rules nest about 15 deep and hold a few hundred values; the bounds leave room and no more.
MAX_DEPTH: Final = 64
MAX_NODES: Final = 20_000

INFIX_OPERATORS: Final = frozenset(
    {"===", "and", ">", "<", ">=", "<=", "in", "+", "after", "before", "not-after", "not-before"}
)
_COMPARISONS: Final = frozenset({">", "<", ">=", "<=", "after", "before", "not-after", "not-before"})
OPERATORS: Final = INFIX_OPERATORS | {"var", "if", "!", "plusTime", "reduce", "extractFromUVCI", "dccDateOfBirth"}
_PATH: Final = re.compile(r"([^.]+?)(\.[^.]+?)*")


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: the sub-expression at fault and what is wrong with it."""

    expr: Json
    message: str


def check_bounds(expr: Json, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Refuse an expression nested deeper than ``max_depth`` or holding more than ``max_nodes`` JSON values.

    :raises CertLogicTooDeepError / CertLogicTooLargeError: over a bound.
    """
    stack: list[tuple[Json, int]] = [(expr, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise CertLogicTooLargeError(f"expression holds more than {max_nodes} values")
        if depth > max_depth:
            raise CertLogicTooDeepError(f"expression nested deeper than {max_depth}")
        if isinstance(item, list):
            stack.extend((part, depth + 1) for part in item)
        elif isinstance(item, dict):
            stack.extend((part, depth + 1) for part in item.values())


def _arity(expr: Json, what: str, values: list[Json], low: int, high: int) -> list[Issue]:
    if low <= len(values) <= high:
        return []
    wanted = f"exactly {low}" if low == high else (f"at least {low}" if high > 99 else f"{low} or {high}")
    return [Issue(expr, f"{what} must have {wanted} operands, but it has {len(values)}")]


def _validate_operation(expr: Json, operator: str, values: Json) -> list[Issue]:
    if operator == "var":
        if not isinstance(values, str):
            return [Issue(expr, 'not of the form { "var": "<path>" }')]
        if values != "" and _PATH.fullmatch(values) is None:
            return [Issue(expr, f"data access path doesn't have a valid format: {values}")]
        return []
    if not isinstance(values, list):
        return [Issue(expr, 'operation not of the form { "<operator>": [ <values...> ] }')]
    issues: list[Issue] = []
    if operator in ("if", "reduce"):
        issues += _arity(expr, f'an "{operator}"-operation', values, 3, 3)
        operands = values[:3]
    elif operator == "and":
        issues += _arity(expr, 'an "and" operation', values, 2, 1000)
        operands = values
    elif operator in _COMPARISONS:
        issues += _arity(expr, f'an operation with operator "{operator}"', values, 2, 3)
        operands = values[:3]
    elif operator in INFIX_OPERATORS:
        issues += _arity(expr, f'an operation with operator "{operator}"', values, 2, 2)
        operands = values[:2]
    elif operator in ("!", "dccDateOfBirth"):
        issues += _arity(expr, f'a "{operator}"-operation', values, 1, 1)
        operands = values[:1]
    elif operator == "plusTime":
        # The reference order: arity, then the date operand's own issues, then the literal arguments.
        issues += _arity(expr, 'a "plusTime"-operation', values, 3, 3)
        issues += [issue for operand in values[:1] for issue in _validate(operand)]
        if len(values) > 1 and not is_int(values[1]):
            issues.append(Issue(expr, '"amount" argument (#2) of "plusTime" must be an integer'))
        if len(values) > 2 and values[2] not in TIME_UNITS:
            issues.append(Issue(expr, f'"unit" argument (#3) of "plusTime" must be one of {", ".join(TIME_UNITS)}'))
        return issues
    elif operator == "extractFromUVCI":
        issues += _arity(expr, 'an "extractFromUVCI"-operation', values, 2, 2)
        issues += [issue for operand in values[:1] for issue in _validate(operand)]
        if len(values) > 1 and not is_int(values[1]):
            issues.append(Issue(expr, '"index" argument (#2) of "extractFromUVCI" must be an integer'))
        return issues
    else:
        return [Issue(expr, f'unrecognised operator: "{operator}"')]
    for operand in operands:
        issues += _validate(operand)
    return issues


def _validate(expr: Json) -> list[Issue]:
    if isinstance(expr, str | bool) or is_int(expr):
        return []
    if isinstance(expr, float):
        return [Issue(expr, f"{expr} is a non-integer number")]
    if isinstance(expr, list):
        return [issue for item in expr for issue in _validate(item)]
    if isinstance(expr, dict):
        if len(expr) != 1:
            return [Issue(expr, f"expression object must have exactly one key, but it has {len(expr)}")]
        ((operator, values),) = expr.items()
        return _validate_operation(expr, operator, values)
    return [Issue(expr, "invalid CertLogic expression")]


def validate(expr: Json) -> list[Issue]:
    """Every issue of ``expr`` as a CertLogic expression; empty when it is valid.

    :raises CertLogicTooDeepError / CertLogicTooLargeError: over a bound (checked before the walk).
    """
    check_bounds(expr)
    return _validate(expr)
