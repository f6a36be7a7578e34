"""``placegate verify``: judge one EU DCC ("HC1:") code against trusted DSC certificates and print JSON.

This is an I/O edge: it reads the code and certificate files and, without ``--at``, the clock; the verdicts
come from the pure ``crypto.dcc.inspect_hc1``.  Output is exactly one JSON object (the contract of
the DCC conformance runner, docs/dcc.md): decoded, failed_stage, signature_valid, expired, key_usage_valid,
schema_valid, hcert, kid_conflict, error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from crypto.dcc import inspect_hc1
from crypto.dcc_trust import DscTrustList
from crypto.errors import TrustListError

__all__ = ["build_parser", "main", "register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``verify`` sub-command."""
    parser = subparsers.add_parser(
        "verify", help="verify an EU DCC (HC1:) code and print the verdicts as JSON"
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-cert",
        action="append",
        default=[],
        metavar="PEM",
        help="a trusted Document Signer Certificate (PEM); repeatable",
    )
    parser.add_argument(
        "--at",
        default=None,
        metavar="ISO8601",
        help="judge expiry at this instant (default: now; empty string: do not judge expiry)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    parser.add_argument("code_file", metavar="CODE_FILE", help="file holding the HC1: text ('-' for stdin)")


def _parse_instant(text: str) -> datetime | None:
    """``--at`` value to an aware UTC datetime; None when empty or unparseable (expiry is then unjudged)."""
    if not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    # A clock without an offset is UTC, as the conformance runner normalises it.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _read_code(path: str) -> str:
    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    # A text editor's trailing newline is not part of the QR payload; anything else is left to the decoder.
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    """Print one JSON object with the verdicts; exit 0 when fully valid, 1 otherwise, 2 on usage."""
    notes: list[str] = []
    try:
        trust = DscTrustList.from_pem_files(args.trust_cert)
    except (OSError, TrustListError) as exc:
        trust = DscTrustList(())
        notes.append(f"trust certificate unusable: {type(exc).__name__}")
    now = datetime.now(UTC) if args.at is None else _parse_instant(args.at)
    try:
        text = _read_code(args.code_file)
    except OSError as exc:
        sys.stdout.write(orjson.dumps({"error": f"cannot read code file: {exc.strerror}"}).decode() + "\n")
        return 2
    report = inspect_hc1(text, trust, now=now)
    out = report.to_json()
    if notes:
        out["notes"] = list(notes)
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    fully_valid = (
        report.signature_valid
        and report.expired is False
        and report.schema_valid is True
        and report.key_usage_valid is not False
    )
    return 0 if fully_valid else 1


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser for ``python -m gateway.trust.verify``."""
    parser = argparse.ArgumentParser(prog="placegate verify", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m gateway.trust.verify``."""
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
