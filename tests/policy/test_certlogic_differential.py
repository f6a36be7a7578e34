"""Differential test against the reference implementation, certlogic-js: the same random expressions on the same
random data give the same JSON result, or an error in both. It runs only where an install of certlogic-js is named
by ``CERTLOGIC_JS_DIR`` (the package directory, e.g. ``node_modules/certlogic-js``) and ``node`` is on PATH; the
project does not ship or fetch it."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from policy.certlogic import CertLogicError, evaluate, json_equal, to_json

CERTLOGIC_JS = os.environ.get("CERTLOGIC_JS_DIR", "")
pytestmark = pytest.mark.skipif(
    not CERTLOGIC_JS or not (Path(CERTLOGIC_JS) / "package.json").is_file() or shutil.which("node") is None,
    reason="set CERTLOGIC_JS_DIR to an install of certlogic-js (and have node) to run the differential test",
)

_OPS = ["if", "===", "and", ">", "<", ">=", "<=", "in", "+", "after", "before", "not-after", "not-before", "!",
        "plusTime", "reduce", "extractFromUVCI", "dccDateOfBirth"]
_DATES = ["2021-06-01", "2021-06-01T10:00:00Z", "2020-02-29T23:59:59.999+01:00", "1990", "1990-02",
          "2021-06-01T10:00:00", "2021-06-01T10:00:00.1234-0530", "2021-01-31T00:00:00+5"]
_STRINGS = [*_DATES, "", "x", "URN:UVCI:01:NL:187/37512422923", "a::c/#/f"]
_PATHS = ["", "a", "b", "a.0", "d", "n", "s", "c.x", "arr.1", "current", "accumulator"]
_RUNNER = """
const { evaluate } = require(process.argv[1]);
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
console.log(JSON.stringify(cases.map(([expr, data]) => {
  try { const value = evaluate(expr, data); return { ok: JSON.parse(JSON.stringify(value ?? null)) }; }
  catch (error) { return { error: String(error.message) }; }
})));
"""


def _literal(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if roll < 0.2:
        return rng.choice([0, 1, 2, -3, 17])
    if roll < 0.35:
        return rng.choice([True, False])
    if roll < 0.55:
        return rng.choice(_STRINGS)
    if roll < 0.8:
        return {"var": rng.choice(_PATHS)}
    return [_expression(rng, depth + 1) for _ in range(rng.randint(0, 2))]


def _expression(rng: random.Random, depth: int = 0) -> Any:
    if depth > 4 or rng.random() < 0.35:
        return _literal(rng, depth)
    op = rng.choice(_OPS)
    if op == "plusTime":
        return {op: [_expression(rng, depth + 1), rng.choice([0, 1, -1, 12, -18]),
                     rng.choice(["year", "month", "day", "hour"])]}
    if op == "extractFromUVCI":
        return {op: [_expression(rng, depth + 1), rng.choice([-1, 0, 1, 2, 3, 5])]}
    arity = {"!": 1, "dccDateOfBirth": 1, "if": 3, "reduce": 3, "===": 2, "in": 2, "+": 2}.get(op)
    return {op: [_expression(rng, depth + 1) for _ in range(arity or rng.randint(2, 3))]}


def _data(rng: random.Random) -> Any:
    return {"a": [rng.choice([1, "x", None, True])], "b": rng.choice([0, 1, "", "y", None, [], {}]),
            "d": rng.choice(_DATES), "n": rng.choice([0, 5, -2]), "s": rng.choice(["URN:UVCI:01:AT:1#B", "", "abc"]),
            "c": {"x": rng.choice([1, None, [1, 2]])}, "arr": [rng.choice([1, 2]), rng.choice([[1, 2], [], "q", 3])]}


def test_random_expressions_agree_with_certlogic_js() -> None:
    rng = random.Random(18)
    cases = [[_expression(rng), _data(rng)] for _ in range(3000)]
    proc = subprocess.run(["node", "-e", _RUNNER, str(Path(CERTLOGIC_JS).resolve())], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=120, check=True)
    reference = json.loads(proc.stdout)
    disagreements, values = [], 0
    for (expr, data), theirs in zip(cases, reference, strict=True):
        try:
            ours: dict[str, Any] = {"ok": to_json(evaluate(expr, data))}
        except CertLogicError as exc:
            ours = {"error": exc.code}
        if "ok" in ours and "ok" in theirs:
            values += 1
            if not json_equal(ours["ok"], theirs["ok"]):
                disagreements.append((expr, data, ours, theirs))
        elif ("ok" in ours) != ("ok" in theirs):
            disagreements.append((expr, data, ours, theirs))
    assert disagreements == []
    assert values > 500  # the control: most cases give a value on both sides, not only errors


def _broken(rng: random.Random, expr: Any) -> Any:
    """``expr`` with some sub-expressions made invalid (a dropped operand, a float, a bad path, an unknown op)."""
    roll = rng.random()
    if isinstance(expr, dict) and roll < 0.2:
        ((op, values),) = expr.items()
        if isinstance(values, list) and values:
            return {op: values[:-1]}
    if roll < 0.25:
        return rng.choice([None, 3.5, {"var": "x."}, {"var": 1}, {"nope": [1]}, {"a": 1, "b": 2}, {"if": 1}])
    if isinstance(expr, dict):
        ((op, values),) = expr.items()
        return {op: [_broken(rng, item) for item in values] if isinstance(values, list) else values}
    if isinstance(expr, list):
        return [_broken(rng, item) for item in expr]
    return expr


_VALIDATOR = """
const { validateFormat } = require(process.argv[1] + "/dist/validation");
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map((expr) => validateFormat(expr).map((issue) => issue.expr))));
"""


def test_the_validator_reports_what_certlogic_js_reports_in_the_same_order() -> None:
    from policy.certlogic import validate

    rng = random.Random(5)
    cases = [_broken(rng, _expression(rng)) for _ in range(3000)]
    proc = subprocess.run(["node", "-e", _VALIDATOR, str(Path(CERTLOGIC_JS).resolve())], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=120, check=True)
    reference = json.loads(proc.stdout)
    ours = [[issue.expr for issue in validate(expr)] for expr in cases]
    assert [i for i, (a, b) in enumerate(zip(ours, reference, strict=True)) if a != b] == []
    assert sum(1 for issues in reference if issues) > 1000  # the control: most cases are invalid somewhere
