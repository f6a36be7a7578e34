"""CertLogic scored on the public files in ../shared/conformance (RULES-README.md there): the specification's
evaluator test suite (184 scored assertions), its validator test suite (14 cases) and the dcc-rules-testdata
country rule sets (750 rule tests), all through ``policy.certlogic``; a sample through ``placegate rules eval``.
The files are read where they lie, never copied into this repository; without them the tests skip."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from policy.certlogic import CertLogicError, evaluate, json_equal, to_json, validate

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO.parent / "shared" / "conformance"
SPEC = CONFORMANCE / "certlogic" / "specification"
RULES = CONFORMANCE / "dcc-rules-testdata"

needs_spec = pytest.mark.skipif(not (SPEC / "testSuite").is_dir(), reason="shared/conformance/certlogic absent")
needs_rules = pytest.mark.skipif(not RULES.is_dir(), reason="shared/conformance/dcc-rules-testdata absent")


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _assertions() -> Iterator[tuple[str, Any, Any, Any, bool]]:
    """(label, expression, data, expected, skipped) for every assertion of the evaluator test suite."""
    for path in sorted((SPEC / "testSuite").glob("*.json")):
        suite = _read(path)
        for case in suite["cases"]:
            for number, assertion in enumerate(case["assertions"]):
                # "skip" on the file, the case or the assertion; "only" is a Mocha debugging aid, no directive.
                skipped = "skip" in (suite.get("directive"), case.get("directive"), assertion.get("directive"))
                expr = assertion.get("certLogicExpression", case.get("certLogicExpression"))
                yield (f"{path.name}: {case['name']} #{number}", expr, assertion["data"], assertion["expected"],
                       skipped)


def _passes(expr: Any, data: Any, expected: Any) -> bool:
    try:
        return json_equal(to_json(evaluate(expr, data)), expected)
    except CertLogicError:
        return False  # no assertion expects an error


@needs_spec
def test_evaluator_passes_every_scored_assertion_of_the_specification_suite() -> None:
    tally: Counter[str] = Counter()
    failures = []
    for label, expr, data, expected, skipped in _assertions():
        if skipped:
            tally["skipped"] += 1
        elif _passes(expr, data, expected):
            tally["passed"] += 1
        else:
            tally["failed"] += 1
            failures.append(label)
    assert failures == []
    assert tally == Counter(passed=184, skipped=14)


@needs_spec
def test_validator_reports_the_issues_of_the_validation_suite() -> None:
    scored = 0
    for path in sorted((SPEC / "validation-testSuite").glob("*.json")):
        for case in _read(path)["cases"]:
            issues = validate(case["certLogicExpression"])
            assert [issue.expr for issue in issues] == [issue["expr"] for issue in case["issues"]], case
            # Strict mode: the reference implementation's English wording too.
            assert [issue.message for issue in issues] == [issue["message"] for issue in case["issues"]], case
            scored += 1
    assert scored == 14


def _rule_tests() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    # As RULES-README.md says: rules only as */*/rule.json, tests only as tests/test<digits>.json (MT/ has neither).
    for rule_file in sorted(RULES.glob("*/*/rule.json")):
        rule = _read(rule_file)
        for test_file in sorted((rule_file.parent / "tests").glob("*.json")):
            if re.fullmatch(r"test\d+\.json", test_file.name):
                yield str(test_file.relative_to(RULES)), rule, _read(test_file)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@needs_rules
def test_country_rule_sets_pass_every_rule_test() -> None:
    tally: Counter[tuple[str, bool]] = Counter()
    failures, wrong_files = [], []
    for label, rule, test in _rule_tests():
        clock = (test.get("external") or {}).get("validationClock")
        if clock is not None and not _instant(rule["ValidFrom"]) <= _instant(clock) < _instant(rule["ValidTo"]):
            wrong_files.append(label)  # reported apart: the test file itself would be wrong
            continue
        data = {"payload": test.get("payload"), "external": test.get("external")}
        verdict = _passes(rule["Logic"], data, test["expected"])
        tally[("pass" if verdict else "fail", test["expected"])] += 1
        if not verdict:
            failures.append(label)
    assert wrong_files == []
    assert failures == []
    # Both outcomes are scored apart: an evaluator that always said true would pass 479 of 750.
    assert tally == Counter({("pass", True): 479, ("pass", False): 271})


def _cli(tmp_path: Path, logic: Any, data: Any) -> tuple[int, Any]:
    (tmp_path / "logic.json").write_text(json.dumps(logic), encoding="utf-8")
    (tmp_path / "data.json").write_text(json.dumps(data), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "rules", "eval", "--logic", str(tmp_path / "logic.json"),
         "--data", str(tmp_path / "data.json")],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    return proc.returncode, json.loads(lines[0])


@needs_spec
def test_rules_eval_command_scores_a_suite_file_from_outside(tmp_path: Path) -> None:
    # One whole file of the suite through the command (29 assertions), as an outside scorer would run it.
    scored = 0
    for label, expr, data, expected, skipped in _assertions():
        if skipped or not label.startswith("extractFromUCVI.json"):
            continue
        code, result = _cli(tmp_path, expr, data)
        assert code == 0 and json_equal(result, expected), label
        scored += 1
    assert scored == 29


@needs_rules
def test_rules_eval_command_scores_rule_tests_with_payload_and_external(tmp_path: Path) -> None:
    outcomes = Counter()
    for label, rule, test in _rule_tests():
        if not label.startswith("EU/VR-EU-0002/"):
            continue
        code, result = _cli(tmp_path, rule["Logic"], {"payload": test.get("payload"), "external": test.get("external")})
        assert code == 0 and result is test["expected"], label
        outcomes[result] += 1
    assert outcomes[True] > 0 and outcomes[False] > 0


@needs_spec
@needs_rules
def test_rules_score_reports_the_public_suites_like_the_conformance_runner(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    assert main(["rules", "score", str(SPEC / "testSuite"), str(RULES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("testSuite: 184 passed, 0 failed, 14 skipped")
    assert lines[1].endswith("dcc-rules-testdata: 750 passed, 0 failed, 0 skipped, 271 passed expecting false, "
                             "479 passed expecting true")
    assert lines[-1] == "934 passed, 0 failed, 14 skipped"


def test_rules_score_names_each_failure_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    suite = {"name": "s", "cases": [{"name": "c", "certLogicExpression": {"+": [1, 1]}, "assertions": [
        {"data": {}, "expected": 2}, {"data": {}, "expected": 3}, {"data": {}, "expected": 2, "directive": "skip"}]}]}
    (tmp_path / "suite.json").write_text(json.dumps(suite), encoding="utf-8")
    assert main(["rules", "score", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["FAIL suite.json: c #1: expected 3, got 2", f"{tmp_path}: 1 passed, 1 failed, 1 skipped",
                     "1 passed, 1 failed, 1 skipped"]
