"""The `placegate` command line, run as a user would: as subprocesses on a temp data directory."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

PLACEGATE = [sys.executable, "-m", "gateway"]
COMMANDS = ["serve", "keys", "issue", "places", "devices", "principals", "status", "verify", "trust", "dispatch",
            "audit", "privacy"]


def _run(*args: str, data_dir: Path, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLACEGATE_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run([*PLACEGATE, *args], capture_output=True, text=True, env=env, check=check, timeout=60)


def test_help_lists_every_command_and_each_has_help(tmp_path: Path) -> None:
    top = _run("--help", data_dir=tmp_path).stdout
    for command in COMMANDS:
        assert command in top
        assert "usage: placegate " + command in _run(command, "--help", data_dir=tmp_path).stdout


def test_admin_commands_on_the_embedded_server(tmp_path: Path) -> None:
    assert "usage=health" in _run("keys", "new", "--usage", "health", "--alg", "Ed25519", data_dir=tmp_path).stdout
    _run("keys", "new", "--usage", "place", data_dir=tmp_path)
    listing = _run("keys", "list", data_dir=tmp_path).stdout
    assert "Ed25519" in listing and "place" in listing
    place_code = _run("places", "add", "mall-1", "--class", "B", "--jurisdiction", "city/d1/s1",
                      data_dir=tmp_path).stdout.strip()
    assert place_code.startswith("PGP:")
    assert "mall-1\tclass=B" in _run("places", "list", data_dir=tmp_path).stdout
    token = _run("devices", "add", "gate-1", "--place", "mall-1", data_dir=tmp_path).stdout.strip()
    assert token.startswith("pgt_")
    assert _run("devices", "add", "gate-2", "--place", "nowhere", data_dir=tmp_path, check=False).returncode == 2
    assert _run("issue", "--holder", "h-1", data_dir=tmp_path).stdout.startswith("PGH:")
    lines = [json.dumps({"holder": f"h-{i}", "colour": "green", "updated_at": 1_790_000_000 + i}) for i in range(50)]
    lines.append("{broken")
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(lines) + "\n")
    loaded = _run("status", "load", str(feed), "--quiet", data_dir=tmp_path, check=False)
    assert "applied=50" in loaded.stdout and "rejected=1" in loaded.stdout
    assert "revoked gate-1" in _run("devices", "revoke", "gate-1", data_dir=tmp_path).stdout
    # The token itself is never stored: only its SHA-256 appears in the data directory's AOF.
    aof = b"".join(p.read_bytes() for p in (tmp_path / "redis").rglob("*.aof"))
    assert aof and token.encode() not in aof


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(90)
def test_serve_demo_prints_a_curl_line_that_admits_then_is_replayed(tmp_path: Path) -> None:
    port = _free_port()
    # A retry window of 1 s (README says 5, the default): the same line again at once is the scanner's retry.
    env = {**os.environ, "PLACEGATE_DATA_DIR": str(tmp_path), "PLACEGATE_SCAN_RETRY_WINDOW_S": "1"}
    proc = subprocess.Popen([*PLACEGATE, "serve", "--demo", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    answers = []
    try:
        line = ""
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline and not line.startswith("curl "):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        words = shlex.split(line)
        assert words[:4] == ["curl", "-s", "-X", "POST"], line
        url = words[4]
        headers = dict(h.split(": ", 1) for h in (words[i + 1] for i, w in enumerate(words) if w == "-H"))
        body = words[words.index("-d") + 1].encode()
        for pause in (0, 0, 1.2):
            time.sleep(pause)
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=10) as resp:
                answers.append(json.loads(resp.read()))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert (answers[0]["decision"], answers[0]["reason"]) == ("admit", "ok")
    assert (answers[1]["decision"], answers[1]["reason"]) == ("admit", "ok")  # within the retry window
    assert (answers[2]["decision"], answers[2]["reason"]) == ("deny", "replayed")
    # The embedded server was stopped with the gateway and left its AOF in the data directory.
    assert list((tmp_path / "redis").rglob("*.aof"))
    assert "Traceback" not in stderr
    # Each answer's access-log line reached stderr: the last one, sent just before SIGINT, was most likely still in
    # the access log's buffer (flushed every 50 ms) and written by the shutdown.
    access = [json.loads(x) for x in stderr.splitlines() if '"logger":"placegate.access"' in x]
    assert [x["status"] for x in access if x["route"] == "/v1/scan"] == [200, 200, 200]


def test_an_unknown_command_is_a_usage_error_naming_the_commands(tmp_path: Path) -> None:
    proc = _run("bogus", data_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert "invalid choice: 'bogus'" in proc.stderr and "'verify'" in proc.stderr


@pytest.mark.parametrize("args", [["places", "list"], ["principals", "list"], ["keys", "list"], ["dispatch", "sweep"]])
def test_an_unreachable_redis_is_a_message_and_exit_69_never_a_traceback(tmp_path: Path, args: list[str]) -> None:
    env = {"PLACEGATE_SECRET": "00" * 32}
    done = _run(*args, "--redis-url", f"unix://{tmp_path}/no-such.sock", data_dir=tmp_path, check=False, env=env)
    assert done.returncode == 69
    assert "(store_unavailable)" in done.stderr
    assert "Traceback" not in done.stderr
