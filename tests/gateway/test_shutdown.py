"""`placegate serve` as a real subprocess on the test Redis: SIGTERM stops accepting, lets the request in flight
finish, closes a stalled one and exits within the drain deadline (one process and --workers 2); the workers of a
supervisor that dies by any signal, SIGKILL included, are gone within 5 s and the port is free."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from gateway.workers import _watch_supervisor
from tests.gateway.conftest import SECRET, World
from tests.gateway.test_workers import _free_port, _listening, _wait_healthy, _workers

DRAIN_S = 2.0
# What the interpreter needs to exit once the drain is over (loop close, module teardown) on a loaded test host.
EXIT_MARGIN_S = 2.0

Served = tuple[subprocess.Popen[bytes], int]


TAG = "PG_SHUTDOWN_TEST_TAG"  # not PLACEGATE_*: the gateway would report it as an unknown setting


def _tagged(tag: str) -> list[psutil.Process]:
    """Every process started for one test, orphaned workers included (their parent is no longer the supervisor)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(TAG) == tag:
                found.append(proc)
    return found


@pytest.fixture
def serve(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Starts `placegate serve --workers N`; every process it started is killed afterwards, pass or fail."""
    tag = f"{os.getpid()}-{tmp_path.name}"
    logs = []
    popens: list[subprocess.Popen[bytes]] = []

    def start(workers: int, *, drain_s: float | None = DRAIN_S) -> Served:
        """``drain_s=None``: the default drain deadline."""
        port = _free_port()
        env = {**os.environ, "PLACEGATE_SECRET": SECRET.reveal().hex(), "PLACEGATE_STATUS_BUCKETS": "1024",
               "PLACEGATE_BODY_READ_TIMEOUT_S": "60", TAG: tag}
        if drain_s is not None:
            env["PLACEGATE_DRAIN_TIMEOUT_S"] = str(drain_s)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = (tmp_path / f"serve-{port}.log").open("wb")
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--workers", str(workers), "--redis-url", redis_url,
             "--port", str(port), "--data-dir", str(tmp_path / f"data-{port}")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        popens.append(proc)
        return proc, port

    try:
        yield start
    finally:
        left = _tagged(tag)
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(left, timeout=5)
        for proc in popens:
            proc.kill()  # a no-op once it has exited
            proc.wait(5)
        for log in logs:
            log.close()


async def _up(proc: subprocess.Popen[bytes], port: int, workers: int) -> list[psutil.Process]:
    """The serving processes once every one of them listens (the supervisor's children, or the process itself)."""
    if workers > 1:
        await _wait_healthy(port, proc)
        return _workers(psutil.Process(proc.pid))
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    while not _listening(me, port):
        assert proc.poll() is None, "placegate serve exited early"
        assert time.monotonic() < deadline, "placegate serve did not come up"
        await asyncio.sleep(0.05)
    return [me]


def _request_head(world: World, length: int) -> bytes:
    return (f"POST /v1/scan HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
            f"Authorization: Bearer {world.tokens['dev-a']}\r\n\r\n").encode()


async def _accepted(servers: list[psutil.Process], local_ports: set[int], port: int) -> None:
    """Until the server side holds our connections (accepted; their headers were sent before)."""
    deadline = time.monotonic() + 10
    while True:
        held = {c.raddr.port for s in servers for c in s.net_connections("tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port and c.raddr}
        if local_ports <= held:
            return
        assert time.monotonic() < deadline, "the server did not accept the connections"
        await asyncio.sleep(0.05)


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_finishes_the_request_in_flight_cuts_a_stalled_one_and_exits_within_the_drain(
    world: World, serve: Callable[..., Served], workers: int, tmp_path: Path
) -> None:
    await world.set_status("holder-1")
    proc, port = serve(workers)
    servers = await _up(proc, port, workers)
    body = orjson.dumps({"code": world.code("holder-1")})
    # In flight: headers and the start of its body sent; the rest comes after SIGTERM.
    live_reader, live_writer = await asyncio.open_connection("127.0.0.1", port)
    live_writer.write(_request_head(world, len(body)) + body[:10])
    # Stalled: 10 of 100 announced bytes, and nothing more ever (the read deadline is 60 s, past the drain).
    stalled_reader, stalled_writer = await asyncio.open_connection("127.0.0.1", port)
    stalled_writer.write(_request_head(world, 100) + b'{"code": "')
    # Idle: one request answered, the connection kept alive for the next.
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    await asyncio.gather(live_writer.drain(), stalled_writer.drain(), idle_writer.drain())
    assert (await idle_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    ports = {w.get_extra_info("sockname")[1] for w in (live_writer, stalled_writer, idle_writer)}
    await _accepted(servers, ports, port)
    await asyncio.sleep(0.3)  # the accepted connections' headers parsed: their handlers are running

    try:
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        deadline = signalled + DRAIN_S
        while not _refuses(port):  # stops accepting (the kernel may still take one before the socket closes)
            assert time.monotonic() < deadline, "still accepting connections during the drain"
            await asyncio.sleep(0.05)

        live_writer.write(body[10:])
        await live_writer.drain()
        async with asyncio.timeout(DRAIN_S + EXIT_MARGIN_S):
            answer = await live_reader.read()  # to the end: the server closes the connection after the answer
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert b"\r\nConnection: close\r\n" in answer.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        async with asyncio.timeout(DRAIN_S + EXIT_MARGIN_S):
            await idle_reader.read()  # the kept-alive connection is closed too (after the rest of /healthz)
        assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["decision"] == "admit"

        async with asyncio.timeout(DRAIN_S + EXIT_MARGIN_S):
            try:
                cut = await stalled_reader.read()
            except ConnectionResetError:
                cut = b""
        assert not cut.startswith(b"HTTP/1.1 2"), cut[:200]  # closed (or refused), never answered as if whole

        code = await asyncio.to_thread(proc.wait, DRAIN_S + EXIT_MARGIN_S + 5)
        exited_after = time.monotonic() - signalled
    finally:
        for writer in (live_writer, stalled_writer, idle_writer):
            writer.close()
    assert code == 0
    assert exited_after < DRAIN_S + EXIT_MARGIN_S, exited_after
    log = (tmp_path / f"serve-{port}.log").read_text()
    assert "Traceback" not in log and " ERROR " not in log, log
    assert all(not s.is_running() or s.status() == psutil.STATUS_ZOMBIE for s in servers)


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_when_idle_exits_at_once_with_status_0(
    world: World, serve: Callable[..., Served], workers: int
) -> None:
    proc, port = serve(workers)
    await _up(proc, port, workers)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, DRAIN_S + EXIT_MARGIN_S) == 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
async def test_the_workers_exit_within_5_s_of_the_supervisor_dying_and_free_the_port(
    world: World, serve: Callable[..., Served], sig: signal.Signals
) -> None:
    proc, port = serve(2, drain_s=None)  # the default drain (10 s) is longer than the 5 s an orphan may take
    workers = await _up(proc, port, 2)
    assert len(workers) == 2
    # Stalled requests, spread by the kernel over both workers: an orphan must not wait the whole drain for them.
    stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
    try:
        for _, writer in stalled:
            writer.write(_request_head(world, 100) + b'{"code": "')
            await writer.drain()
        await _accepted(workers, {w.get_extra_info("sockname")[1] for _, w in stalled}, port)
        proc.send_signal(sig)  # the supervisor handles neither: it dies without stopping its workers
        assert await asyncio.to_thread(proc.wait, 5) == -sig
        died = time.monotonic()
        _, alive = await asyncio.to_thread(psutil.wait_procs, workers, 5)
        alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"workers outlived their supervisor by 5 s: {[p.pid for p in alive]}"
        assert time.monotonic() - died < 5
    finally:
        for _, writer in stalled:
            writer.close()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no holder; a listener is
        probe.bind(("127.0.0.1", port))


async def test_the_watchdog_stops_an_orphaned_worker() -> None:
    """Where PR_SET_PDEATHSIG is missing, the poll of the parent pid is what stops an orphaned worker."""
    stop = asyncio.Event()
    watch = asyncio.create_task(_watch_supervisor(os.getppid(), stop))
    await asyncio.sleep(0.1)
    assert not stop.is_set() and not watch.done()  # the supervisor is still the parent: keep serving
    watch.cancel()
    await _watch_supervisor(os.getpid(), stop)  # a parent other than the supervisor: it has died
    assert stop.is_set()
