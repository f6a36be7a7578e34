"""The `placegate` command line. Each sub-command lives in its own module and registers itself here.

Sub-command modules are imported lazily: ``placegate verify`` must start without aiohttp, redis or
prometheus_client, which the admin commands pull in through ``cli_common`` (about 0.9 s of imports). The
top-level parser therefore lists every command from the ``COMMANDS`` table and imports only the module of the
command being run; ``tests/test_cli_imports.py`` keeps the table equal to what each module registers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from gateway.errors import StoreUnavailableError
from gateway.settings import unknown_variable_warnings

__all__ = ["COMMANDS", "EX_BROKEN_PIPE", "EX_UNAVAILABLE", "build_parser", "command_of", "main", "version"]

EX_UNAVAILABLE = 69  # sysexits.h: a service is unavailable (1 is taken by rejected input, 2 by usage errors)
EX_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool SIGPIPE ended (`placegate dispatch report | head`)

# Command name -> (module whose register() adds it, its one-line help). A module registering several commands
# has them in a row, in its register() order, so that `placegate --help` lists them as registered.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("gateway.serve", "run the gateway (embedded Redis when no --redis-url)"),
    "keys": ("gateway.trust.cli_keys", "manage trusted issuer keys"),
    "issue": ("gateway.trust.cli_keys", "DEMO/TEST ONLY: mint a health code with a local test issuer key"),
    "places": ("gateway.trust.cli_registry", "register places and print their signed place codes"),
    "devices": ("gateway.trust.cli_registry", "register scanner devices (token printed once)"),
    "principals": ("gateway.trust.cli_registry", "manage principals of every role (token printed once)"),
    "status": ("gateway.status.cli", "health-authority status cache"),
    "verify": ("gateway.trust.verify", "verify an EU DCC (HC1:) code and print the verdicts as JSON"),
    "trust": ("gateway.trust.cli_dsc", "manage the EU DCC (HC1) document-signer trust list"),
    "rules": ("gateway.trust.cli_rules", "EU DCC business rules: evaluate, validate or score CertLogic"),
    "dispatch": ("gateway.dispatch.cli", "dispatch core: sweep deadlines, evaluation report, intake worker"),
    "audit": ("gateway.privacy.cli", "verify and query the hash-chained audit trail"),
    "privacy": ("gateway.privacy.cli", "retention report, record of processing activities, contact tracing"),
    "openapi": ("gateway.openapi_cli", "print the OpenAPI document of this gateway (docs/openapi.json)"),
}


def command_of(argv: Sequence[str]) -> str | None:
    """The command argparse will dispatch to: the first word that is not an option, if it names a command."""
    for word in argv:
        # The top-level parser has no option taking a value, so the first non-option word is the command.
        if word == "--" or word.startswith("-"):
            continue
        return word if word in COMMANDS else None
    return None


def version() -> str:
    """The installed distribution's version; from pyproject.toml when run from a source tree not installed."""
    try:
        return metadata.version("placegate")
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text("utf-8"))["project"]["version"])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser of ``command``'s module; every other command is a help-only stub from ``COMMANDS``.

    :param command: a key of ``COMMANDS`` whose module is imported, or None to import no sub-command module.
    """
    parser = argparse.ArgumentParser(
        prog="placegate", description="Place-code verification gateway: signed health codes, status cache, "
        "admission policy, purpose-limited log, dispatch of exceptions."
    )
    parser.add_argument("--version", action="version", version=f"placegate {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    loaded = COMMANDS[command][0] if command is not None else None
    for name, (module_path, help_text) in COMMANDS.items():
        if module_path != loaded:
            sub.add_parser(name, help=help_text)
        elif name not in sub.choices:
            importlib.import_module(module_path).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(command_of(words)).parse_args(words)
    # Reported, not fatal: a stale variable left in a unit file must not stop a restart.
    for warning in unknown_variable_warnings(os.environ):
        print(f"placegate: warning: {warning}", file=sys.stderr)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a reader that went away is seen here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `placegate dispatch report | head`: the reader has all it wanted. Quiet, like any unix tool; stdout
        # points at /dev/null so the interpreter's own flush at exit does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_BROKEN_PIPE
    except ValueError as exc:  # SettingsError among them: its message starts with the variable's name
        print(f"placegate: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailableError as exc:  # Redis down or refusing: an operator needs the cause, not a traceback
        cause = f": {exc.__cause__}" if exc.__cause__ is not None and str(exc.__cause__) else ""
        print(f"placegate: {exc.detail} ({exc.code}){cause}", file=sys.stderr)
        return EX_UNAVAILABLE
    except OSError as exc:
        if exc.filename is None:
            raise
        # A file the operator named (`status load FEED`, a data directory) that is missing or not writable.
        print(f"placegate: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
