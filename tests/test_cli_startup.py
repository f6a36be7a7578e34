"""Start-up as an operator meets it: the secret rules, the store's fingerprint of the secret, `--demo` against an
external store, and every common mistake ending in one line on stderr and exit 2, never a traceback.

Each command runs as a real subprocess; the store is the session's real server (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from gateway import keyspace
from gateway.cli import EX_BROKEN_PIPE, EX_UNAVAILABLE, version
from gateway.secretcheck import public_url, secret_fingerprint
from gateway.settings import Secret
from tests.conftest import sync_client

ROOT = Path(__file__).resolve().parent.parent
PLACEGATE = [sys.executable, "-m", "gateway"]
# The suite's shared secret (tests/gateway/conftest.py): what every CLI run on the session server uses, so the
# store's fingerprint agrees with every other test's.
SUITE_SECRET = bytes(range(32)).hex()
OTHER_SECRET = "ab" * 32
DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _run(args: list[str], data_dir: Path, *, stdin: str | None = None,
         **variables: str) -> subprocess.CompletedProcess[str]:
    # The caller's own PLACEGATE_* variables are dropped: each test states every one it means.
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PLACEGATE_")}
    env.update(PLACEGATE_DATA_DIR=str(data_dir), **variables)
    return subprocess.run([*PLACEGATE, *args], capture_output=True, text=True, env=env, timeout=60, check=False,
                          input=stdin)


def _one_line(done: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The only line on stderr, after checking the exit status and that no traceback was printed."""
    assert done.returncode == status, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("placegate: ")
    return lines[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def store(redis_url: str) -> Iterator[SyncRedis]:
    """The session server, flushed; its fingerprint is removed afterwards, so the suite's next CLI run sets its own."""
    with sync_client(redis_url) as client:  # the one factory of the tests: the URL may name a cluster
        client.flushdb()
        try:
            yield client
        finally:
            client.delete(keyspace.SECRET_FINGERPRINT)


# --- the secret must be explicit against an external store -----------------------------------------------------

@pytest.mark.parametrize("args", [
    ["serve"], ["status", "load", "/dev/null"], ["dispatch", "sweep"], ["keys", "list"], ["places", "list"],
    ["devices", "revoke", "gate-1"], ["principals", "list"], ["trust", "list"], ["privacy", "retention"],
    ["audit", "verify"],
])
def test_an_external_store_without_a_secret_is_refused_before_it_is_asked(tmp_path: Path, args: list[str]) -> None:
    line = _one_line(_run([*args, "--redis-url", DOWN], tmp_path))
    assert line.startswith("placegate: PLACEGATE_SECRET: required with an external store")
    assert "--secret-file" in line
    assert not (tmp_path / "secret").exists()  # no process invents its own secret for a shared store


def test_the_variable_names_an_external_store_as_the_flag_does(tmp_path: Path) -> None:
    line = _one_line(_run(["keys", "list"], tmp_path, PLACEGATE_REDIS_URL=DOWN))
    assert line.startswith("placegate: PLACEGATE_SECRET: required with an external store")


def test_a_secret_file_is_the_secret(tmp_path: Path, redis_url: str, store: SyncRedis) -> None:
    secret_file = tmp_path / "secret.hex"
    secret_file.write_text(SUITE_SECRET + "\n")
    done = _run(["keys", "list", "--redis-url", redis_url, "--secret-file", str(secret_file)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert store.get(keyspace.SECRET_FINGERPRINT) == secret_fingerprint(Secret(bytes.fromhex(SUITE_SECRET))).encode()
    # The variable form reads the same file; a command that resolves the secret before asking the store too.
    done = _run(["keys", "list", "--redis-url", redis_url], tmp_path, PLACEGATE_SECRET_FILE=str(secret_file))
    assert done.returncode == 0, done.stderr
    done = _run(["dispatch", "sweep", "--redis-url", redis_url, "--secret-file", str(secret_file)], tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read"), ("c0ffeg" * 12, "hex digits"), ("ab" * 16, "hex digits"),
])
def test_a_bad_secret_file_is_named_and_never_echoed(tmp_path: Path, content: str | None, problem: str) -> None:
    secret_file = tmp_path / "secret.hex"
    if content is not None:
        secret_file.write_text(content)
    line = _one_line(_run(["keys", "list", "--redis-url", DOWN, "--secret-file", str(secret_file)], tmp_path))
    assert line.startswith(f"placegate: PLACEGATE_SECRET_FILE: {secret_file}" if content else
                           "placegate: PLACEGATE_SECRET_FILE: cannot read")
    assert problem in line and (content is None or content[:6] not in line)


def test_a_secret_and_a_secret_file_together_are_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.hex"
    secret_file.write_text(SUITE_SECRET)
    line = _one_line(_run(["keys", "list", "--redis-url", DOWN, "--secret-file", str(secret_file)], tmp_path,
                          PLACEGATE_SECRET=SUITE_SECRET))
    assert line.startswith("placegate: PLACEGATE_SECRET_FILE: set either")


def test_the_embedded_mode_still_generates_its_secret_in_the_data_directory(tmp_path: Path) -> None:
    done = _run(["keys", "list"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "secret").read_text()) == 64


# --- the store's fingerprint of the secret ----------------------------------------------------------------------

def test_the_fingerprint_is_keyed_never_the_secret_nor_its_plain_hash() -> None:
    secret = bytes.fromhex(SUITE_SECRET)
    fingerprint = secret_fingerprint(Secret(secret))
    assert fingerprint == secret_fingerprint(Secret(secret))
    assert fingerprint != secret_fingerprint(Secret(bytes.fromhex(OTHER_SECRET)))
    plain = {hashlib.sha256(secret).hexdigest(), hashlib.blake2b(secret, digest_size=32).hexdigest(), SUITE_SECRET}
    assert fingerprint not in plain and len(fingerprint) == 64


def test_a_process_with_another_secret_refuses_to_start_naming_the_mismatch(
    tmp_path: Path, redis_url: str, store: SyncRedis
) -> None:
    first = _run(["keys", "list", "--redis-url", redis_url], tmp_path / "a", PLACEGATE_SECRET=SUITE_SECRET)
    assert first.returncode == 0, first.stderr
    theirs = secret_fingerprint(Secret(bytes.fromhex(SUITE_SECRET)))
    assert store.get(keyspace.SECRET_FINGERPRINT) == theirs.encode()
    assert store.ttl(keyspace.SECRET_FINGERPRINT) == -1  # configuration: kept until the deployment is reset
    # The split: `status load` from another directory with another secret. Now it stops, loads nothing.
    feed = tmp_path / "feed.jsonl"
    feed.write_text('{"holder": "h-1", "colour": "green", "updated_at": 1790000000}\n')
    for args in (["status", "load", str(feed)], ["dispatch", "sweep"], ["serve", "--port", str(_free_port())]):
        line = _one_line(_run([*args, "--redis-url", redis_url], tmp_path / "b", PLACEGATE_SECRET=OTHER_SECRET))
        assert line.startswith(f"placegate: PLACEGATE_SECRET: the store at {redis_url} was initialised with "
                               f"another secret (fingerprint {theirs[:12]}…")
        assert "set PLACEGATE_SECRET to that deployment's secret" in line
        assert OTHER_SECRET not in line and SUITE_SECRET not in line
    assert not any(key.startswith(b"pg:st:") for key in store.scan_iter())  # nothing was loaded
    assert store.get(keyspace.SECRET_FINGERPRINT) == theirs.encode()  # the refused process changed nothing


def test_the_fingerprint_key_is_configuration_without_expiry() -> None:
    data_class = keyspace.data_class_of(keyspace.SECRET_FINGERPRINT)
    assert data_class is not None and (data_class.name, data_class.expires) == ("secret_fingerprint", False)
    assert keyspace.SECRET_FINGERPRINT.startswith(keyspace.REGISTRY_PREFIXES)


def test_a_password_in_the_store_url_is_never_shown() -> None:
    assert public_url("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert public_url("rediss://ops:hunter2@cache:6379/0") == "rediss://ops:***@cache:6379/0"
    assert public_url("unix:///run/valkey.sock") == "unix:///run/valkey.sock"


# --- serve --demo and an external store ------------------------------------------------------------------------

def test_demo_against_an_external_store_is_refused_without_the_flag(tmp_path: Path, redis_url: str) -> None:
    line = _one_line(_run(["serve", "--demo", "--redis-url", redis_url, "--port", str(_free_port())], tmp_path,
                          PLACEGATE_SECRET=SUITE_SECRET))
    assert line.startswith("placegate: PLACEGATE_REDIS_URL: serve --demo ")
    assert "--demo-into-external" in line


@pytest.mark.timeout(90)
def test_demo_into_external_says_what_it_writes_and_serves(tmp_path: Path, redis_url: str, store: SyncRedis) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PLACEGATE_")}
    env.update(PLACEGATE_DATA_DIR=str(tmp_path), PLACEGATE_SECRET=SUITE_SECRET)
    args = ["serve", "--demo", "--demo-into-external", "--redis-url", redis_url, "--port", str(_free_port())]
    proc = subprocess.Popen([*PLACEGATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and not line.startswith("curl "):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert line.startswith("curl "), proc.stderr.read() if proc.poll() is not None else "no curl line"
        assert store.sismember(keyspace.PLACES, "demo-office")
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    said = [text for text in stderr.splitlines() if text.startswith("--demo-into-external:")]
    assert len(said) == 1 and redis_url in said[0]
    assert "'demo-office'" in said[0] and "'demo-scanner'" in said[0] and "'demo-holder-0001'" in said[0]


# --- operator mistakes at start: one line, exit 2 (69 for a store that does not answer), no traceback -----------

def test_a_store_that_does_not_answer_at_start_is_one_line_naming_it(tmp_path: Path) -> None:
    done = _run(["serve", "--redis-url", DOWN, "--port", str(_free_port())], tmp_path, PLACEGATE_SECRET=SUITE_SECRET)
    line = _one_line(done, EX_UNAVAILABLE)
    assert line.startswith(f"placegate: the store at {DOWN} did not answer (store_unavailable)")


@pytest.mark.single_node("puts wrong credentials into the session server's unix:// URL; the test cluster has no AUTH")
def test_a_store_refusing_the_credentials_is_a_configuration_mistake(tmp_path: Path, redis_url: str) -> None:
    wrong = redis_url.replace("unix://", "unix://nobody:wrong@")
    line = _one_line(_run(["serve", "--redis-url", wrong, "--port", str(_free_port())], tmp_path,
                          PLACEGATE_SECRET=SUITE_SECRET))
    assert line.startswith("placegate: PLACEGATE_REDIS_URL: the store at unix://nobody:***@")
    assert "refused the credentials" in line and "wrong" not in line


@pytest.mark.parametrize(("rules", "variable", "problem"), [
    (None, "PLACEGATE_RULES_FILE", "cannot read"),
    ("x = [", "PLACEGATE_RULES_FILE", "not valid TOML"),
    ("[classes.Z]\nbogus = 1\n", "PLACEGATE_RULES_FILE", ""),
])
def test_a_missing_or_invalid_rules_file_stops_serve_naming_it(
    tmp_path: Path, rules: str | None, variable: str, problem: str
) -> None:
    path = tmp_path / "rules.toml"
    if rules is not None:
        path.write_text(rules)
    line = _one_line(_run(["serve", "--port", str(_free_port())], tmp_path, PLACEGATE_RULES_FILE=str(path)))
    assert line.startswith(f"placegate: {variable}: ") and str(path) in line and problem in line
    assert not (tmp_path / "redis").exists()  # refused before the embedded server was started


def test_a_missing_routing_table_stops_serve_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    line = _one_line(_run(["serve", "--port", str(_free_port())], tmp_path,
                          PLACEGATE_DISPATCH_ROUTING_FILE=str(path)))
    assert line.startswith(f"placegate: PLACEGATE_DISPATCH_ROUTING_FILE: cannot read {path}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_stops_serve_naming_it(tmp_path: Path, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line(_run(["serve", "--port", str(port), "--workers", workers], tmp_path))
    assert line == f"placegate: PLACEGATE_PORT: 127.0.0.1:{port} is already in use (another gateway or program " \
                   "listens there)"
    assert not (tmp_path / "redis").exists()


def test_a_missing_status_feed_is_named(tmp_path: Path, redis_url: str, store: SyncRedis) -> None:
    missing = tmp_path / "no-such-feed.jsonl"
    line = _one_line(_run(["status", "load", str(missing), "--redis-url", redis_url], tmp_path,
                          PLACEGATE_SECRET=SUITE_SECRET))
    assert line == f"placegate: {missing}: No such file or directory"


def test_an_unwritable_data_directory_is_named(tmp_path: Path) -> None:
    # A data directory under a plain file cannot be created, even by root (who ignores permission bits).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _one_line(_run(["keys", "list"], blocker / "data"))
    assert line.startswith(f"placegate: PLACEGATE_DATA_DIR: cannot write {blocker / 'data' / 'secret'}: ")


@pytest.mark.parametrize("args", [["serve"], ["keys", "list"]])
def test_a_bad_port_variable_is_named(tmp_path: Path, args: list[str]) -> None:
    line = _one_line(_run(args, tmp_path, PLACEGATE_PORT="abc"))
    assert line == "placegate: PLACEGATE_PORT: expected an integer, got 'abc'"


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path, redis_url: str, store: SyncRedis) -> None:
    # `placegate dispatch report ... | head`: the reader is gone before the report is written.
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PLACEGATE_")}
    env.update(PLACEGATE_DATA_DIR=str(tmp_path), PLACEGATE_SECRET=SUITE_SECRET)
    args = ["dispatch", "report", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z",
            "--redis-url", redis_url]
    proc = subprocess.Popen([*PLACEGATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter has even started: the first write meets a closed pipe
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EX_BROKEN_PIPE
    assert stderr == ""


# --- --version ---------------------------------------------------------------------------------------------------

def test_version_prints_the_package_version(tmp_path: Path) -> None:
    done = _run(["--version"], tmp_path)
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    assert (done.returncode, done.stdout, done.stderr) == (0, f"placegate {expected}\n", "")


def test_version_falls_back_to_pyproject_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert version() == tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]


def test_the_license_file_and_pyproject_agree() -> None:
    text = (ROOT / "LICENSE").read_text("utf-8")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["license"]["text"]
    assert declared == "Apache-2.0" and "Apache License" in text and "Version 2.0, January 2004" in text


def test_no_doc_or_comment_points_outside_the_repository() -> None:
    # The project's design notes and style guide were never part of the repository: a pointer to them (or to
    # the session's shared folder) leaves a reader with nothing to open.
    outside = ("../shared", "/work/", "DESIGN.md", "STYLE.md")
    files = [ROOT / "README.md", ROOT / "PRIVACY.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    files += [p for p in (ROOT / "docs").rglob("*") if p.is_file()]
    files += [p for p in (ROOT / "ops").rglob("*") if p.is_file()]
    for package in ("crypto", "policy", "gateway", "bench"):
        files += [p for p in (ROOT / package).rglob("*") if p.suffix in (".py", ".toml", ".md")]
    found = [f"{p.relative_to(ROOT)}: {needle}" for p in files for needle in outside
             if needle in p.read_text("utf-8", errors="replace")]
    assert found == []
