"""``placegate rules eval --logic LOGIC.json --data DATA.json``: evaluate one CertLogic expression;
``placegate rules validate --logic LOGIC.json``: list its issues; ``placegate rules score DIR...``: score test
files (``certlogic_score.py``).

An I/O edge over the pure evaluator (``policy/certlogic``): it reads two JSON files and prints one line of JSON,
the result (exit 0), or ``{"error": CODE, "detail": ...}`` (exit 1) for an invalid expression or an unreadable
file, so any test suite in the CertLogic format can be scored from outside (docs/dcc.md "CertLogic").  It imports
neither aiohttp nor redis: a scorer runs it once per assertion.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from policy.certlogic import CertLogicError, CertLogicTooDeepError, evaluate, to_json, validate

__all__ = ["register"]

INVALID_INPUT = "invalid_input"  # a file that cannot be read or is not JSON (not an expression error)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``rules`` sub-command."""
    rules = sub.add_parser("rules", help="EU DCC business rules: evaluate, validate or score CertLogic")
    rsub = rules.add_subparsers(dest="rules_cmd", required=True)
    ev = rsub.add_parser("eval", help="evaluate a CertLogic expression on a data context; one line of JSON")
    ev.add_argument("--logic", required=True, type=Path, metavar="LOGIC.json", help="the CertLogic expression")
    ev.add_argument("--data", required=True, type=Path, metavar="DATA.json",
                    help='the data context (for a DCC rule: {"payload": ..., "external": ...})')
    ev.set_defaults(func=_eval)
    va = rsub.add_parser("validate", help="list the issues of a CertLogic expression as one line of JSON")
    va.add_argument("--logic", required=True, type=Path, metavar="LOGIC.json", help="the CertLogic expression")
    va.set_defaults(func=_validate)
    sc = rsub.add_parser("score", help="score CertLogic evaluator suites or business-rule test folders")
    sc.add_argument("directories", nargs="+", type=Path, metavar="DIR",
                    help="a testSuite folder (*.json) or a rule-test folder (<SET>/<RULE>/rule.json)")
    sc.set_defaults(func=_score)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load(path: Path, what: str) -> Any:
    """The JSON in ``path``; raises ``_InputError`` for an unreadable file or text that is not JSON."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _InputError(INVALID_INPUT, f"{what}: cannot read {path}: {exc}") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        # Deeper than the parser's own recursion: far past the evaluator's depth bound.
        raise _InputError(CertLogicTooDeepError.code, f"{what}: nested too deep to parse") from None
    except ValueError as exc:
        raise _InputError(INVALID_INPUT, f"{what}: not JSON: {exc}") from None


class _InputError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


def _print(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")


def _eval(args: argparse.Namespace) -> int:
    try:
        logic = _load(args.logic, "logic")
        data = _load(args.data, "data")
        result = to_json(evaluate(logic, data))
    except _InputError as exc:
        _print({"error": exc.code, "detail": exc.detail})
        return 1
    except CertLogicError as exc:
        _print({"error": exc.code, "detail": str(exc)})
        return 1
    _print(result)
    return 0


def _validate(args: argparse.Namespace) -> int:
    """``[{"expr": ..., "message": ...}, ...]`` (the validator test suite's shape): exit 0 when empty, else 1."""
    try:
        issues = validate(_load(args.logic, "logic"))
    except _InputError as exc:
        _print({"error": exc.code, "detail": exc.detail})
        return 1
    except CertLogicError as exc:  # over a bound: refused before the walk
        _print({"error": exc.code, "detail": str(exc)})
        return 1
    _print([{"expr": issue.expr, "message": issue.message} for issue in issues])
    return 0 if not issues else 1


def _score(args: argparse.Namespace) -> int:
    from gateway.trust.certlogic_score import score_paths

    for directory in args.directories:
        if not directory.is_dir():
            print(f"placegate: {directory}: not a directory", file=sys.stderr)
            return 2
    try:
        lines, passed = score_paths(args.directories)
    except (OSError, ValueError) as exc:
        print(f"placegate: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if passed else 1
