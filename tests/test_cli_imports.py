"""The CLI imports lazily: `placegate verify` starts without aiohttp, redis or prometheus_client (issue 12).

The import checks run the real command in a subprocess under ``python -X importtime`` and read the module names
it logs on stderr; no timing is asserted (machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from gateway.cli import COMMANDS, command_of

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"
RUNNER = CONFORMANCE / "dcc_conformance.py"
# A valid Austrian vaccination certificate: decoded, signature valid and unexpired at its validation clock.
DCC_CASE = CONFORMANCE / "dcc-testdata" / "AT" / "2DCode" / "raw" / "1.json"
HEAVY = {"aiohttp", "redis", "prometheus_client"}


def _imported(*args: str, stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m gateway ARGS``; the result and the names of every module it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gateway", *args],
        capture_output=True, text=True, input=stdin, timeout=60, check=False,
    )
    # Lines read "import time: <self us> | <cumulative us> | <indented dotted name>".
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    names.discard("imported package")  # the header line
    return proc, names


def _heavy(names: set[str]) -> set[str]:
    return {name for name in names if name.split(".", 1)[0] in HEAVY}


def test_importtime_parsing_sees_aiohttp_where_it_is_imported() -> None:
    # The control for the tests below: `serve` needs aiohttp, so an empty answer there would mean a broken parse.
    proc, names = _imported("serve", "--help")
    assert proc.returncode == 0, proc.stderr
    assert {"aiohttp", "redis"} <= _heavy(names)


@pytest.mark.parametrize("args", [("--help",), ("verify", "--help"), ("-h", "verify"), ()])
def test_help_imports_no_server_stack(args: tuple[str, ...]) -> None:
    proc, names = _imported(*args)
    assert proc.returncode == (2 if not args else 0), proc.stderr
    assert _heavy(names) == set()


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dcc_conformance", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not DCC_CASE.is_file() or not RUNNER.is_file(), reason="shared/conformance/dcc-testdata absent")
def test_verify_of_a_dcc_test_file_imports_no_server_stack(tmp_path: Path) -> None:
    # The certificate and clock are prepared as the conformance runner prepares them, with its own helpers.
    runner = _load_runner()
    case = json.loads(DCC_CASE.read_text(encoding="utf-8-sig"))
    cert = tmp_path / "dsc.pem"
    cert.write_text(runner.pem_of(runner.cert_der(case["TESTCTX"]["CERTIFICATE"])), encoding="ascii")
    code = tmp_path / "code.txt"
    code.write_text(case["PREFIX"], encoding="utf-8")
    clock = runner.format_clock(runner.parse_clock(case["TESTCTX"]["VALIDATIONCLOCK"]))
    proc, names = _imported("verify", "--trust-cert", str(cert), "--at", clock, "--json", str(code))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert (report["decoded"], report["signature_valid"], report["expired"]) == (True, True, False)
    assert "crypto.dcc_trust" in names
    assert _heavy(names) == set()


def _registered(module_path: str) -> list[tuple[str, str]]:
    """The (command, help) pairs the module's register() adds, in its order."""
    sub = argparse.ArgumentParser(prog="placegate").add_subparsers(dest="command")
    importlib.import_module(module_path).register(sub)
    return [(action.dest, action.help or "") for action in sub._choices_actions]


@pytest.mark.parametrize("module_path", sorted({module for module, _ in COMMANDS.values()}))
def test_table_lists_what_each_module_registers_with_its_help(module_path: str) -> None:
    table = [(name, help_text) for name, (module, help_text) in COMMANDS.items() if module == module_path]
    assert _registered(module_path) == table


def test_a_module_registering_several_commands_has_them_in_a_row() -> None:
    # Otherwise `placegate --help` would list them in another order when that module is the one loaded.
    modules = [module for module, _ in COMMANDS.values()]
    runs = [module for i, module in enumerate(modules) if i == 0 or modules[i - 1] != module]
    assert len(runs) == len(set(runs))


def _registers_subcommands(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "register" and node.args.args:
            annotation = node.args.args[0].annotation
            if annotation is not None and "_SubParsersAction" in ast.unparse(annotation):
                return True
    return False


def test_every_module_with_a_subcommand_register_is_in_the_table() -> None:
    found = set()
    for path in sorted((REPO / "gateway").rglob("*.py")):
        if _registers_subcommands(ast.parse(path.read_text(encoding="utf-8"))):
            found.add(".".join(path.relative_to(REPO).with_suffix("").parts))
    assert found == {module for module, _ in COMMANDS.values()}


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["verify", "--json", "x"], "verify"),
        (["privacy", "trace", "--help"], "privacy"),
        (["-h", "verify"], "verify"),
        (["--", "keys", "list"], "keys"),
        (["bogus", "verify"], None),
        (["--help"], None),
        ([], None),
    ],
)
def test_command_of_finds_the_word_argparse_dispatches_on(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command
