"""``placegate rules score DIR...``: score CertLogic test files with this gateway's evaluator.

Two formats, told apart by their layout: a CertLogic evaluator test suite (``*.json`` files of
``{"name", "cases": [{"certLogicExpression", "assertions": [...]}]}``, ``"directive": "skip"`` honoured on the file,
the case or the assertion) and a business-rule test folder (``<SET>/<RULE>/rule.json`` with
``tests/test<digits>.json``, evaluated on ``{"payload", "external"}``).  One line per failure, then per folder
``N passed, M failed, K skipped`` (rule tests also by the expected outcome) and a last line with the totals; exit
0 when nothing failed.  Pure file reading and the pure evaluator: no store, no network.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from policy.certlogic import CertLogicError, evaluate, json_equal, to_json

__all__ = ["score_paths"]

_TEST_FILE = re.compile(r"test\d+\.json")


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def _outcome(expr: Any, data: Any, expected: Any) -> tuple[bool, str]:
    try:
        result = to_json(evaluate(expr, data))
    except CertLogicError as exc:
        return False, f"error {exc.code}"
    return json_equal(result, expected), json.dumps(result)[:200]


def _suite(directory: Path) -> Iterator[tuple[str, bool | None, str, Any]]:
    """(label, passed or None when skipped, actual, expected) for every assertion of an evaluator suite."""
    for path in sorted(directory.glob("*.json")):
        suite = _read(path)
        for case in suite.get("cases", []):
            for number, assertion in enumerate(case.get("assertions", [])):
                label = f"{path.name}: {case.get('name', '?')} #{number}"
                if "skip" in (suite.get("directive"), case.get("directive"), assertion.get("directive")):
                    yield label, None, "", None
                    continue
                expr = assertion.get("certLogicExpression", case.get("certLogicExpression"))
                passed, actual = _outcome(expr, assertion.get("data"), assertion.get("expected"))
                yield label, passed, actual, assertion.get("expected")


def _rules(directory: Path) -> Iterator[tuple[str, bool | None, str, Any]]:
    for rule_file in sorted(directory.glob("*/*/rule.json")):
        logic = _read(rule_file).get("Logic")
        for test_file in sorted((rule_file.parent / "tests").glob("*.json")):
            if not _TEST_FILE.fullmatch(test_file.name):
                continue
            test = _read(test_file)
            data = {"payload": test.get("payload"), "external": test.get("external")}
            passed, actual = _outcome(logic, data, test.get("expected"))
            yield str(test_file.relative_to(directory)), passed, actual, test.get("expected")


def score_paths(directories: list[Path]) -> tuple[list[str], bool]:
    """The report's lines and whether everything scored passed."""
    lines: list[str] = []
    totals: Counter[str] = Counter()
    for directory in directories:
        is_rules = any(directory.glob("*/*/rule.json"))
        tally: Counter[str] = Counter()
        for label, passed, actual, expected in (_rules if is_rules else _suite)(directory):
            if passed is None:
                tally["skipped"] += 1
                continue
            tally["passed" if passed else "failed"] += 1
            if is_rules:
                tally[f"{'passed' if passed else 'failed'} expecting {json.dumps(expected)}"] += 1
            if not passed:
                lines.append(f"FAIL {label}: expected {json.dumps(expected)[:200]}, got {actual}")
        detail = "".join(f", {tally[key]} {key}" for key in sorted(tally) if " expecting " in key)
        lines.append(f"{directory}: {tally['passed']} passed, {tally['failed']} failed, {tally['skipped']} skipped"
                     f"{detail}")
        totals.update({key: tally[key] for key in ("passed", "failed", "skipped")})
    lines.append(f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return lines, totals["failed"] == 0
