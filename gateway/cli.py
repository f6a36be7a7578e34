"""The `placegate` command line. Each sub-command lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from gateway import serve as cli_serve
from gateway.dispatch import cli as cli_dispatch
from gateway.privacy import cli as cli_audit
from gateway.status import cli as cli_status
from gateway.trust import cli_dsc as cli_trust
from gateway.trust import cli_keys, cli_registry
from gateway.trust import verify as cli_verify

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES: list[ModuleType] = [
    cli_serve, cli_keys, cli_registry, cli_status, cli_verify, cli_trust, cli_dispatch, cli_audit,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="placegate", description="Place-code verification gateway: signed health codes, status cache, "
        "admission policy, purpose-limited log, dispatch of exceptions."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        print(f"placegate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
