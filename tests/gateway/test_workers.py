"""`placegate serve --workers 2` as a real subprocess on the test Redis: both workers answer, SIGTERM stops all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.gateway.conftest import SECRET, World


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _workers(parent: psutil.Process) -> list[psutil.Process]:
    return [c for c in parent.children() if "spawn_main" in " ".join(c.cmdline())]


def _scans_counted(metrics_dir: Path, pid: int) -> float:
    """The scans a worker counted in its own multiprocess file (other counters exist from its start)."""
    path = metrics_dir / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    return sum(value for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
               if json.loads(key)[1] == "placegate_scans_total")


def _listening(worker: psutil.Process, port: int) -> bool:
    """Whether the worker has bound its own SO_REUSEPORT socket: until it has, the kernel sends every connection
    to the workers that have (a worker still importing is alive but not serving)."""
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in worker.net_connections("tcp"))
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def served(redis_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = _free_port()
    env = {**os.environ, "PLACEGATE_SECRET": SECRET.reveal().hex(), "PLACEGATE_STATUS_BUCKETS": "1024"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--workers", "2", "--redis-url", redis_url, "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield proc, port, tmp_path / "data" / "prometheus"
    finally:
        if proc.poll() is None:
            # A failed test leaves the supervisor running: its workers go too, or they outlive the session.
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
        log.close()


async def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "placegate serve --workers 2 exited early"
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    workers = _workers(psutil.Process(proc.pid))
                    if resp.status == 200 and len(workers) == 2 and all(_listening(w, port) for w in workers):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("gateway workers did not come up")


async def test_two_workers_share_the_port_and_sigterm_stops_all(
    world: World, served: tuple[subprocess.Popen[bytes], int, Path]
) -> None:
    proc, port, metrics_dir = served
    await _wait_healthy(port, proc)
    await world.set_status("holder-1")
    children = _workers(psutil.Process(proc.pid))
    pids = {c.pid for c in children}
    assert len(pids) == 2
    # Each scan on a new connection: the kernel spreads connections over the two listening sockets by a hash of
    # the client's address and port, so 200 connections all landing on one of two sockets has odds of 2**-199.
    sent = 0
    for _ in range(200):
        sent += 1
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{port}/v1/scan", json={"code": world.code("holder-1")}, headers=world.auth("dev-a")
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["decision"] == "admit"
        if {p for p in pids if _scans_counted(metrics_dir, p)} == pids:
            break
    answered = {p for p in pids if _scans_counted(metrics_dir, p)}
    assert answered == pids, "both workers counted scans"
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("placegate_scans_total{"))
    assert total >= 2  # summed over both workers' files
    answers = [line for line in text.splitlines() if line.startswith('placegate_http_requests_total{route="/v1/scan"')]
    assert answers == [f'placegate_http_requests_total{{route="/v1/scan",status="200"}} {float(sent)}']

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
