"""`placegate serve --workers N`: N gateway processes on one port (SO_REUSEPORT), supervised by the parent.

The gateway is stateless between requests (every shared fact lives in Redis), so the kernel may hand each new
connection to any worker. The parent starts the embedded Redis once (in ``cli_serve``), spawns the workers,
restarts one that dies, and on SIGINT/SIGTERM stops them all before it exits.

Metrics: prometheus_client multiprocess mode. ``PROMETHEUS_MULTIPROC_DIR`` (``<data_dir>/prometheus``, emptied
at start) is set before any worker is spawned (spawned, not forked: the value class is chosen when
prometheus_client is first imported), each worker writes its samples to memory-mapped files there, and
``/metrics`` on any worker renders the sum over all of them (``Metrics.render``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType

from aiohttp import web

from gateway.settings import Settings

__all__ = ["MULTIPROC_ENV", "metrics_dir", "run_worker", "serve_workers"]

log = logging.getLogger("placegate.workers")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_STOP_GRACE_S = 10.0
_RESTART_BACKOFF_S = 1.0


def metrics_dir(settings: Settings) -> Path:
    return settings.data_dir / "prometheus"


def run_worker(settings: Settings) -> None:
    """One worker: the whole app on the shared port; SIGTERM/SIGINT end it gracefully (aiohttp's run_app)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from gateway.app import serving_app  # imported here: after PROMETHEUS_MULTIPROC_DIR is in the environment

    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(serving_app(settings), host=settings.host, port=settings.port, reuse_port=True, loop=loop,
                access_log=None, print=None)


class _Supervisor:
    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: list[SpawnProcess] = []
        self.stopping = False

    def spawn(self) -> SpawnProcess:
        proc = self.ctx.Process(target=run_worker, args=(self.settings,), name="placegate-worker", daemon=False)
        proc.start()
        return proc

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        self.workers = [self.spawn() for _ in range(self.count)]
        while not self.stopping:
            time.sleep(0.2)
            for i, proc in enumerate(self.workers):
                if proc.is_alive() or self.stopping:
                    continue
                log.warning("worker %s exited with %s; restarting", proc.pid, proc.exitcode)
                _mark_dead(proc.pid)
                time.sleep(_RESTART_BACKOFF_S)
                self.workers[i] = self.spawn()
        return self.stop()

    def stop(self) -> int:
        for proc in self.workers:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for proc in self.workers:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
            _mark_dead(proc.pid)
        return 0


def _mark_dead(pid: int | None) -> None:
    if pid is None or MULTIPROC_ENV not in os.environ:
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def serve_workers(settings: Settings, count: int, *, announce: Callable[[str], None] = print) -> int:
    """Run ``count`` workers on ``settings.host:settings.port`` until SIGINT/SIGTERM; returns the exit status."""
    if count < 1:
        raise ValueError("--workers must be at least 1")
    directory = metrics_dir(settings).resolve()
    shutil.rmtree(directory, ignore_errors=True)  # stale files of a previous run would be summed in
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    supervisor = _Supervisor(settings, count)
    previous = {sig: signal.signal(sig, supervisor.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        announce(f"======== Running on http://{settings.host}:{settings.port} with {count} workers "
                 f"(SO_REUSEPORT) ========\n(Press CTRL+C to quit)")
        return supervisor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
