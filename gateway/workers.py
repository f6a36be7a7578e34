"""`placegate serve --workers N`: N gateway processes on one port (SO_REUSEPORT), supervised by the parent.

The gateway is stateless between requests (every shared fact lives in Redis), so the kernel may hand each new
connection to any worker. The parent starts the embedded Redis once (in ``serve.py``), spawns the workers,
restarts one that dies, and on SIGINT/SIGTERM stops them all before it exits: each drains its requests in flight
within ``drain_timeout_s`` (``serve_process``, which a single-process ``serve`` runs too). A worker whose supervisor
dies by any signal, SIGKILL included, stops within ``ORPHAN_DRAIN_S``: Linux sends it SIGTERM
(PR_SET_PDEATHSIG), and elsewhere a poll of its parent pid notices.

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
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.embedded import die_with_parent
from gateway.logjson import configure_logging
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.http import Drain

__all__ = ["MULTIPROC_ENV", "ORPHAN_DRAIN_S", "metrics_dir", "new_event_loop", "run_worker", "serve_process",
           "serve_workers"]

log = logging.getLogger("placegate.workers")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Past a worker's own drain deadline the supervisor kills it: room for the worker's exit after its drain.
_STOP_MARGIN_S = 2.0
_RESTART_BACKOFF_S = 1.0
# A worker whose supervisor died drains this long at most: the bound is 5 s, and no one will restart it.
ORPHAN_DRAIN_S = 3.0
_CLOSE_RESERVE_S = 1.0
# aiohttp's wait for a request it is cancelling (twice: before and after the cancel), once the drain gave up on it.
_CANCEL_WAIT_S = 0.25
_DRAIN_POLL_S = 0.05
_WATCH_PERIOD_S = 0.5


def metrics_dir(settings: Settings) -> Path:
    return settings.data_dir / "prometheus"


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve_process(settings: Settings, *, reuse_port: bool = False, announce: Callable[[str], None] | None = None,
                  supervisor_pid: int | None = None) -> None:
    """One served gateway process: the whole app on ``settings.host:port`` until SIGTERM/SIGINT, then the drain.

    The drain stops accepting, lets the requests in flight finish, cancels what is left and returns within
    ``settings.drain_timeout_s`` of the signal. A worker (``supervisor_pid`` set) also stops when its supervisor
    is gone, and drains for at most ``ORPHAN_DRAIN_S`` then.
    """
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_serve(settings, reuse_port=reuse_port, announce=announce, supervisor_pid=supervisor_pid))
    # Past the drain, asyncio.Runner cancelled whatever was still running and closed the cleanup contexts.


async def _serve(settings: Settings, *, reuse_port: bool, announce: Callable[[str], None] | None,
                 supervisor_pid: int | None) -> None:
    from gateway.app import serving_app  # imported here: after PROMETHEUS_MULTIPROC_DIR is in the environment
    from gateway.http import DRAIN, Drain

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    app = serving_app(settings)
    drain = app[DRAIN] = Drain()
    # The drain below waits for the requests in flight itself; aiohttp's shutdown then only cancels what is left.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=_CANCEL_WAIT_S)
    await runner.setup()
    drain_s = settings.drain_timeout_s
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
        await site.start()
        # Only now: until the app serves, SIGTERM keeps its default action (nothing to drain, and a start-up that
        # hangs on an unreachable Redis must still end on it).
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if announce is not None:
            announce(f"======== Running on http://{settings.host}:{settings.port} ========\n(Press CTRL+C to quit)")
        watchdog = None if supervisor_pid is None else loop.create_task(_watch_supervisor(supervisor_pid, stop))
        await stop.wait()
        if watchdog is not None:
            watchdog.cancel()
        if supervisor_pid is not None and os.getppid() != supervisor_pid:
            drain_s = min(drain_s, ORPHAN_DRAIN_S)
            log.warning("the supervisor (pid %s) is gone; stopping", supervisor_pid)
        log.info("stopping: no new connections; requests in flight get at most %s s", drain_s)
    finally:
        await _drain(runner, drain, drain_s)


async def _drain(runner: web.AppRunner, drain: Drain, deadline_s: float) -> None:
    """Stop accepting, wait for the requests in flight, then close the connections, cancel what is left and close
    the app, all within ``deadline_s``."""
    loop = asyncio.get_running_loop()
    # The last part of the deadline is for cancelling the requests left and the cleanup contexts (background
    # tasks, batcher, Redis client).
    patience_end = loop.time() + deadline_s - min(_CLOSE_RESERVE_S, deadline_s / 4)
    try:
        async with asyncio.timeout(deadline_s):
            drain.draining = True
            for site in list(runner.sites):
                await site.stop()
            # Idle keep-alive connections stay open until the wait below is over (aiohttp closes them then): a
            # request that comes on one meanwhile is answered, with Connection: close.
            while drain.busy and loop.time() < patience_end:
                await asyncio.sleep(_DRAIN_POLL_S)
            if drain.busy:
                log.warning("%d requests still in flight at the drain deadline; cancelling them", len(drain.busy))
            await runner.cleanup()
    except TimeoutError:
        # Whatever still runs is cancelled by asyncio.Runner, which also closes the cleanup contexts.
        log.warning("drain deadline of %s s passed; closing the connections left", deadline_s)


async def _watch_supervisor(supervisor_pid: int, stop: asyncio.Event) -> None:
    """The portable half of dying with the supervisor: where PR_SET_PDEATHSIG is missing, a poll notices."""
    while os.getppid() == supervisor_pid:
        await asyncio.sleep(_WATCH_PERIOD_S)
    stop.set()


def run_worker(settings: Settings, supervisor_pid: int) -> None:
    """One worker: the whole app on the shared port; it ends on SIGTERM/SIGINT or when its supervisor dies."""
    die_with_parent()
    if os.getppid() != supervisor_pid:
        return  # the supervisor died before the request above was in force: no signal will come
    configure_logging(settings.log_format)
    serve_process(settings, reuse_port=True, supervisor_pid=supervisor_pid)


class _Supervisor:
    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: list[SpawnProcess] = []
        self.stopping = False

    def spawn(self) -> SpawnProcess:
        proc = self.ctx.Process(target=run_worker, args=(self.settings, os.getpid()), name="placegate-worker",
                                daemon=False)
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
        deadline = time.monotonic() + self.settings.drain_timeout_s + _STOP_MARGIN_S
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
