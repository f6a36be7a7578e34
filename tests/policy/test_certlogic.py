"""The CertLogic evaluator's own rules: its bounds, its error codes, JavaScript's equality and date arithmetic."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from policy.certlogic import (
    MAX_DEPTH,
    MAX_NODES,
    CertLogicError,
    CertLogicTooCostlyError,
    CertLogicTooDeepError,
    CertLogicTooLargeError,
    DateTime,
    evaluate,
    to_json,
    validate,
)

REPO = Path(__file__).resolve().parents[2]


def _nested(depth: int) -> Any:
    expr: Any = {"var": "x"}
    for _ in range(depth):
        expr = {"!": [expr]}
    return expr


def test_expression_nested_past_the_depth_bound_is_refused_with_its_code() -> None:
    assert evaluate(_nested(MAX_DEPTH // 2 - 1), {"x": True}) is False  # {"!": [...]} is two levels each
    with pytest.raises(CertLogicTooDeepError) as caught:
        evaluate(_nested(MAX_DEPTH), {"x": True})
    assert caught.value.code == "certlogic_too_deep"


def test_expression_larger_than_the_size_bound_is_refused_with_its_code() -> None:
    with pytest.raises(CertLogicTooLargeError) as caught:
        evaluate({"in": ["a", ["x"] * MAX_NODES]}, {})
    assert caught.value.code == "certlogic_too_large"


def test_a_reduce_inside_a_reduce_over_large_arrays_runs_out_of_its_step_budget() -> None:
    inner = {"reduce": [{"var": "current"}, {"+": [{"var": "accumulator"}, 1]}, 0]}
    outer = {"reduce": [{"var": "rows"}, {"+": [{"var": "accumulator"}, inner]}, 0]}
    rows = [list(range(1000))] * 1000
    assert evaluate(outer, {"rows": rows[:3]}) == 3000
    with pytest.raises(CertLogicTooCostlyError) as caught:
        evaluate(outer, {"rows": rows})
    assert caught.value.code == "certlogic_too_costly"


def test_an_in_over_a_large_array_inside_a_reduce_over_it_runs_out_of_its_step_budget() -> None:
    search = {"reduce": [{"var": "xs"}, {"+": [{"var": "accumulator"}, {"if": [
        {"in": [{"var": "current"}, {"var": "current"}]}, 1, 0]}]}, 0]}  # fmt: skip
    assert evaluate(search, {"xs": [[1]] * 10}) == 0
    with pytest.raises(CertLogicTooCostlyError):
        evaluate(search, {"xs": [list(range(5000))] * 5000})


def test_a_result_that_doubles_at_each_step_is_refused_when_rendered() -> None:
    doubling = {"reduce": [{"var": "n"}, [{"var": "accumulator"}, {"var": "accumulator"}], 0]}
    assert to_json(evaluate(doubling, {"n": [1, 2]})) == [[0, 0], [0, 0]]
    with pytest.raises(CertLogicTooCostlyError):
        to_json(evaluate(doubling, {"n": list(range(60))}))


@pytest.mark.parametrize(
    ("expr", "data"),
    [
        ({"unknown": [1]}, {}),  # unknown operator
        ({"var": "x", "if": [1, 2, 3]}, {}),  # two keys
        ({"if": [True, 1]}, {}),  # missing else
        ({"===": [1]}, {}),
        ({"plusTime": ["2021-01-01", 1.5, "day"]}, {}),
        ({"plusTime": ["2021-01-01", 1, "week"]}, {}),
        (None, {}),  # null is no literal
        (3.14, {}),
        ({"in": ["a", {"var": "x"}]}, {"x": "abc"}),  # found only while evaluating: not an array
        ({">": [1, {"var": "x"}]}, {"x": "2"}),  # not an integer
        ({"after": [{"var": "x"}, {"var": "x"}]}, {"x": "2021-01-01"}),  # strings are not date-times
        ({"if": [{"plusTime": ["2021-01-01", 0, "day"]}, 1, 2]}, {}),  # a date-time is neither truthy nor falsy
        ({"plusTime": [{"var": "x"}, 0, "day"]}, {"x": "01.02.2021"}),  # not an allowed format
        ({"plusTime": [{"var": "x"}, 0, "day"]}, {"x": "2021-02-30"}),  # not a calendar date
        ({"dccDateOfBirth": [{"var": "x"}]}, {"x": "1990-13"}),
        ({"dccDateOfBirth": [{"var": "x"}]}, {"x": "\u0661\u0669\u0669\u0660"}),  # Arabic-Indic digits: not \d in JS
        ({"extractFromUVCI": [{"var": "x"}, 0]}, {"x": 5}),
        ({"reduce": [{"var": "x"}, 1, 0]}, {"x": "abc"}),
    ],
)
def test_invalid_expressions_raise_certlogic_invalid(expr: Any, data: Any) -> None:
    with pytest.raises(CertLogicError) as caught:
        evaluate(expr, data)
    assert caught.value.code == "certlogic_invalid"


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [(1, 1, True), (1, 1.0, True), (True, 1, False), ("1", 1, False), (None, False, False), ("a", "a", True)],
)
def test_strict_equality_never_coerces(left: Any, right: Any, equal: bool) -> None:
    assert evaluate({"===": [{"var": "0"}, {"var": "1"}]}, [left, right]) is equal


def test_strict_equality_of_objects_is_identity_as_in_javascript() -> None:
    assert evaluate({"===": [{"var": "x"}, {"var": "x"}]}, {"x": {"a": 1}}) is True
    assert evaluate({"===": [[1], [1]]}, {}) is False


@pytest.mark.parametrize(
    ("date", "amount", "unit", "expected"),
    [
        # The specification's leap-day table (1.3.3, "Leap days").
        ("2020-02-29", 1, "day", "2020-03-01T00:00:00.000Z"),
        ("2020-02-29", 1, "month", "2020-03-29T00:00:00.000Z"),
        ("2020-02-29", 1, "year", "2021-03-01T00:00:00.000Z"),
        ("2021-01-31", 1, "month", "2021-03-03T00:00:00.000Z"),  # Date.setUTCMonth carries the day over
        ("2021-06-01T12:00:00.123456+02", -36, "hour", "2021-05-30T22:00:00.123Z"),  # cut, not rounded
        ("2021-06-01T12:00:00-0130", 0, "day", "2021-06-01T13:30:00.000Z"),
        ("1990", 18, "year", "2008-12-31T00:00:00.000Z"),  # a partial date reads as dccDateOfBirth reads it
        ("2000-02", 0, "day", "2000-02-29T00:00:00.000Z"),
    ],
)
def test_plus_time_follows_javascript_date_arithmetic(date: str, amount: int, unit: str, expected: str) -> None:
    result = evaluate({"plusTime": [{"var": ""}, amount, unit]}, date)
    assert isinstance(result, DateTime) and result.iso() == expected


@pytest.mark.parametrize(
    ("dob", "expected"),
    [("1990", "1990-12-31"), ("1990-02", "1990-02-28"), ("2000-02", "2000-02-29"), ("1990-05-17", "1990-05-17")],
)
def test_date_of_birth_is_the_last_date_consistent_with_a_partial_date(dob: str, expected: str) -> None:
    assert to_json(evaluate({"dccDateOfBirth": [{"var": ""}]}, dob)) == expected + "T00:00:00.000Z"


def test_and_is_lazy_and_returns_the_first_falsy_operand() -> None:
    expr = {"and": [{"var": "x"}, {"after": [{"plusTime": [{"var": "x"}, 0, "day"]}, 1]}]}
    assert evaluate(expr, {"x": ""}) == ""


def test_var_drills_through_arrays_and_gives_null_for_anything_missing() -> None:
    data = {"v": [{"dn": 2}], "s": "abc"}
    assert evaluate({"var": "v.0.dn"}, data) == 2
    assert evaluate({"var": "v.1.dn"}, data) is None
    assert evaluate({"var": "v.x"}, data) is None
    assert evaluate({"var": "s.1"}, data) == "b"
    assert evaluate({"var": "v.0.dn.q"}, data) is None
    # JavaScript's own properties are not data: certlogic-js gives 1 and a function here, JSON has neither.
    assert evaluate({"var": "v.length"}, data) is None and evaluate({"var": "s.toString"}, data) is None


def test_evaluation_never_calls_eval_exec_or_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("dynamic code execution")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    rule = {"if": [{"var": "payload.v.0"}, {">=": [{"var": "payload.v.0.dn"}, {"var": "payload.v.0.sd"}]}, True]}
    assert evaluate(rule, {"payload": {"v": [{"dn": 2, "sd": 2}]}}) is True
    assert evaluate({"plusTime": ["2021-01-01", 1, "day"]}, {}) == DateTime(1609545600000)


def test_validator_names_the_offending_subexpression() -> None:
    bad = {"var": "x."}
    issues = validate({"and": [True, {"if": [bad, 1, 2]}]})
    assert [issue.expr for issue in issues] == [bad]


def _cli(tmp_path: Path, logic: str, data: str = "{}") -> tuple[int, Any, str]:
    (tmp_path / "logic.json").write_text(logic, encoding="utf-8")
    (tmp_path / "data.json").write_text(data, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "rules", "eval", "--logic", str(tmp_path / "logic.json"),
         "--data", str(tmp_path / "data.json")],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stdout


def test_rules_eval_prints_the_result_as_one_line_and_exits_0(tmp_path: Path) -> None:
    code, result, out = _cli(tmp_path, '{"plusTime": [{"var": "d"}, 1, "day"]}', '{"d": "2021-12-31"}')
    assert (code, result) == (0, "2022-01-01T00:00:00.000Z")
    assert out.count("\n") == 1


@pytest.mark.parametrize(
    ("logic", "error"),
    [
        ('{"nope": [1]}', "certlogic_invalid"),
        ('{"in": [1, 2]}', "certlogic_invalid"),
        ('[' * 200 + ']' * 200, "certlogic_too_deep"),
        ('[' * 100_000 + ']' * 100_000, "certlogic_too_deep"),
        (json.dumps(["x"] * (MAX_NODES + 1)), "certlogic_too_large"),
        ('{"var": ', "invalid_input"),
        ('NaN', "invalid_input"),
    ],
)
def test_rules_eval_reports_an_invalid_expression_with_its_code_and_exits_1(
    tmp_path: Path, logic: str, error: str
) -> None:
    code, result, _ = _cli(tmp_path, logic)
    assert code == 1
    assert result["error"] == error and isinstance(result["detail"], str)


def test_rules_eval_imports_no_server_stack(tmp_path: Path) -> None:
    (tmp_path / "logic.json").write_text('{"var": "x"}', encoding="utf-8")
    (tmp_path / "data.json").write_text('{"x": 1}', encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gateway", "rules", "eval", "--logic", str(tmp_path / "logic.json"),
         "--data", str(tmp_path / "data.json")],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )
    assert (proc.returncode, proc.stdout) == (0, "1\n")
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and line.count("|") == 2}
    assert "policy.certlogic.evaluator" in names  # the control: the log is read
    assert {name.split(".", 1)[0] for name in names} & {"aiohttp", "redis", "prometheus_client"} == set()


def _validate_cli(tmp_path: Path, logic: str) -> tuple[int, Any]:
    (tmp_path / "logic.json").write_text(logic, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "rules", "validate", "--logic", str(tmp_path / "logic.json")],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_rules_validate_lists_the_issues_with_their_subexpressions(tmp_path: Path) -> None:
    assert _validate_cli(tmp_path, '{"if": [{"var": "x"}, 1, 2]}') == (0, [])
    code, issues = _validate_cli(tmp_path, '{"and": [{"var": "x."}, {"nope": []}]}')
    assert code == 1
    assert [issue["expr"] for issue in issues] == [{"var": "x."}, {"nope": []}]
    assert _validate_cli(tmp_path, "[" * 100 + "]" * 100)[1]["error"] == "certlogic_too_deep"
