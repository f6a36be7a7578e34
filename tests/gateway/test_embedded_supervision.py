"""The embedded server is supervised (issue 13, point 4): when the gateway started it and it dies, the gateway
restarts it on its AOF; an admin command never starts a second server on the gateway's socket."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from gateway.embedded import OWNER_LOCK, EmbeddedServer, socket_alive
from tests.gateway.conftest import SECRET


@pytest.fixture
def data_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pg-sup-"))  # short: unix socket paths are limited to ~100 bytes
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _servers(parent: psutil.Process) -> list[psutil.Process]:
    return [c for c in parent.children() if "server" in c.name()]


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
        return bool(resp.status == 200)
    return False


def _eventually(check: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_gateway_restarts_its_embedded_server_when_it_dies(data_dir: Path) -> None:
    env = {**os.environ, "PLACEGATE_SECRET": SECRET.reveal().hex(), "PLACEGATE_DATA_DIR": str(data_dir)}
    log = (data_dir / "serve.log").open("wb")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    socket_path = data_dir / "redis" / "redis.sock"
    try:
        gateway = psutil.Process(proc.pid)
        # Up means answering HTTP: only then has the gateway taken its server over (and started supervising it).
        _eventually(lambda: _answers(port) and len(_servers(gateway)) == 1)
        (first,) = _servers(gateway)
        first.kill()
        # Restarted, and said so in the gateway's log (what an operator sees).
        _eventually(lambda: b"embedded server restarted" in (data_dir / "serve.log").read_bytes()
                    and socket_alive(socket_path))
        (second,) = _servers(gateway)
        assert second.pid != first.pid and proc.poll() is None
        assert list((data_dir / "redis").rglob("*.aof"))  # the same directory, AOF and all
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            child.kill()
        proc.kill()
        proc.wait()
        log.close()


def test_an_admin_command_waits_for_the_gateways_server_instead_of_starting_a_second(data_dir: Path) -> None:
    redis_dir = data_dir / "redis"
    redis_dir.mkdir()
    with (redis_dir / OWNER_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a gateway supervising a server that is restarting holds it
        env = {**os.environ, "PLACEGATE_DATA_DIR": str(data_dir)}
        admin = subprocess.Popen([sys.executable, "-m", "gateway", "places", "list"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)
            assert admin.poll() is None  # still waiting: it started no server of its own
            assert not socket_alive(redis_dir / "redis.sock")
            server = EmbeddedServer(redis_dir).start()  # the "gateway's" server comes back: it must be free to
            try:
                _, stderr = admin.communicate(timeout=30)
                assert admin.returncode == 0, stderr
                assert server.process is not None and server.process.poll() is None
            finally:
                server.stop()
        finally:
            if admin.poll() is None:
                admin.send_signal(signal.SIGKILL)
                admin.wait()


def test_a_gateway_that_cannot_bind_leaves_a_server_it_did_not_start_running(data_dir: Path) -> None:
    server = EmbeddedServer(data_dir / "redis").start()  # already running when the gateway starts
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            env = {**os.environ, "PLACEGATE_SECRET": SECRET.reveal().hex(), "PLACEGATE_DATA_DIR": str(data_dir)}
            done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--port", str(port)], env=env,
                                  capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode != 0
        assert server.process is not None and server.process.poll() is None
        assert socket_alive(server.socket_path)
    finally:
        server.stop()


def test_a_gateway_killed_with_sigkill_leaves_no_orphan_server(data_dir: Path) -> None:
    env = {**os.environ, "PLACEGATE_SECRET": SECRET.reveal().hex(), "PLACEGATE_DATA_DIR": str(data_dir)}
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        gateway = psutil.Process(proc.pid)
        _eventually(lambda: _answers(port) and len(_servers(gateway)) == 1)
        (server,) = _servers(gateway)
        proc.kill()
        proc.wait()
        _eventually(lambda: not server.is_running() or server.status() == psutil.STATUS_ZOMBIE, timeout_s=5)
        assert not socket_alive(data_dir / "redis" / "redis.sock")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for leftover in psutil.process_iter(["cmdline"]):
            if str(data_dir) in " ".join(leftover.info["cmdline"] or []):
                leftover.kill()
