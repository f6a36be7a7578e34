"""Fault experiments against a served gateway: the store killed, restarted, stopped and continued under a steady
stream of scans (issue 13). Writes bench/FAULTS.md: answers by status during each phase, how many were degraded,
latency percentiles, the time to answer normally again, replays admitted, and exception events lost.

    python -m bench.faults [--rate 200] [--phase-s 10] [--outage-s 10] [--output bench/FAULTS.md]

Everything runs on this machine: a private Redis-compatible server in a temp directory (AOF on), one
`placegate serve` process on a free loopback port, and an open-loop load generator in this process (requests
leave on schedule whether or not earlier ones were answered, so a stalled gateway shows as latency and not as a
lower request rate). Every 10th request presents a code that was already admitted: any admit of it is a replay
admitted. One holder in 20 is red (and its code says so): each of those answers must reach the dispatch intake.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.corpus import holder_name, seed_world
from bench.run import wait_http
from crypto.keys import SigningKey
from crypto.native import Colour, issue_health_code
from gateway import keyspace
from gateway.embedded import EmbeddedServer
from gateway.redisio import connect_redis
from gateway.status.cache import StatusRecord
from gateway.status.writer import StatusWriter
from policy.admission import EXCEPTION_REASONS
from policy.status import HolderStatus, TestResult

HOLDERS = 1000
RED_EVERY = 20  # holder i is red when i % RED_EVERY == 0
REPLAY_EVERY = 10
BUCKETS = 1024
PHASES = ("baseline", "store killed", "store restarted", "store stopped (SIGSTOP)", "store continued")


@dataclass
class Answer:
    phase: int
    sent_at: float
    status: int
    latency_s: float
    degraded: bool = False
    decision: str = ""
    reason: str = ""
    replay: bool = False


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    phase_started: list[float] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_caught_up(port: int, timeout_s: float = 120.0) -> None:
    """Until the gateway's queue of scans waiting for the store is empty (its catch-up after the last fault)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        queued = [float(line.split()[1]) for line in text.splitlines() if line.startswith("placegate_degraded_queue ")]
        if queued and queued[0] == 0:
            time.sleep(1)  # the last group's writes
            return
        time.sleep(0.5)


async def _make_red(redis_url: str, secret: bytes) -> None:
    redis = connect_redis(redis_url)
    writer = StatusWriter.standalone(redis, secret=secret, status_buckets=BUCKETS, status_ttl_s=2 * 24 * 3600)
    now = datetime.now(UTC)
    red = HolderStatus(Colour.RED, now, None, TestResult.NONE, False)
    await writer.upsert_statuses([StatusRecord(holder_name(i), red) for i in range(0, HOLDERS, RED_EVERY)])
    await writer.aclose()
    await redis.aclose()


def _code(key: SigningKey, i: int) -> str:
    holder = i % HOLDERS
    colour = Colour.RED if holder % RED_EVERY == 0 else Colour.GREEN
    return issue_health_code(key, holder_ref=holder_name(holder), colour=colour, now=datetime.now(UTC),
                             nonce=os.urandom(12))


async def _drive(port: int, token: str, key: SigningKey, *, rate: float, durations: Sequence[float],
                 faults: Sequence[object], run: Run) -> None:
    """Send at ``rate`` per second through the phases (``durations`` seconds each), calling each fault as its
    phase begins."""
    url = f"http://127.0.0.1:{port}/v1/scan"
    headers = {"Authorization": f"Bearer {token}"}
    admitted: list[str] = []
    pending: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=256)) as session:

        async def one(phase: int, code: str, replay: bool) -> None:
            started = time.perf_counter()
            try:
                async with session.post(url, json={"code": code}, headers=headers) as resp:
                    body = await resp.json(content_type=None)
                    answer = Answer(phase, started, resp.status, time.perf_counter() - started, replay=replay)
                    if resp.status == 200:
                        answer.degraded = bool(body["degraded"])
                        answer.decision, answer.reason = body["decision"], body["reason"]
                        if answer.decision == "admit" and not replay:
                            admitted.append(code)
            except (aiohttp.ClientError, TimeoutError):
                answer = Answer(phase, started, 0, time.perf_counter() - started, replay=replay)
            run.answers.append(answer)

        start = time.perf_counter()
        i = 0
        for phase in range(len(durations)):
            phase_start = start + sum(durations[:phase])
            phase_s = durations[phase]
            while time.perf_counter() < phase_start:
                await asyncio.sleep(0.001)
            run.phase_started.append(time.perf_counter())
            fault = faults[phase]
            if callable(fault):
                fault()
            while True:
                due = start + i / rate
                if due >= phase_start + phase_s:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                replay = i % REPLAY_EVERY == REPLAY_EVERY - 1 and bool(admitted)
                code = admitted[-1 - (i % len(admitted))] if replay else _code(key, i)
                task = asyncio.get_running_loop().create_task(one(phase, code, replay))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
        if pending:
            await asyncio.gather(*pending)


def phase_table(run: Run, phases: Sequence[str], durations: Sequence[float]) -> list[str]:
    """The per-phase table of a fault run (this module's and bench/cluster_failover.py's): answers, degraded,
    5xx, unanswered, latencies and admitted replays."""
    lines = [
        "| phase | s | sent | 200 | 200 degraded | 5xx | no answer | p50 ms | p99 ms | max ms | replays admitted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase, name in enumerate(phases):
        answers = [a for a in run.answers if a.phase == phase]
        ok = [a for a in answers if a.status == 200]
        latencies = [a.latency_s * 1000 for a in answers if a.status]
        replays = sum(1 for a in answers if a.replay and a.decision == "admit")
        lines.append(
            f"| {name} | {durations[phase]:g} | {len(answers)} | {len(ok)} | {sum(a.degraded for a in ok)} | "
            f"{sum(1 for a in answers if a.status >= 500)} | {sum(1 for a in answers if a.status == 0)} | "
            f"{_pct(latencies, 0.5):.1f} | {_pct(latencies, 0.99):.1f} | {max(latencies, default=float('nan')):.1f} "
            f"| {replays} |"
        )
    return lines


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _render(run: Run, *, rate: float, durations: Sequence[float], events: int, argv: Sequence[str]) -> str:
    lines = [
        "# Fault experiments (bench/faults.py)",
        "",
        f"Command: `python -m bench.faults {' '.join(argv)}` — {rate:g} scans/s; phases of "
        f"{', '.join(f'{d:g}' for d in durations)} s; one "
        "`placegate serve` process, a private server with AOF, all on loopback. Measured "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
    ]
    lines += phase_table(run, PHASES, durations)
    lines.append("")
    for phase in (2, 4):
        restored = run.phase_started[phase]
        normal = [a.sent_at for a in run.answers
                  if a.phase == phase and a.status == 200 and not a.degraded and a.sent_at >= restored]
        recovery = f"{min(normal) - restored:.2f} s" if normal else "never in the phase"
        lines.append(f"- Recovery in **{PHASES[phase]}**: the first normal (not degraded) answer went to a request "
                     f"sent {recovery} after the phase began (a restarted server first loads its AOF).")
    lines.append(loss_line(run, events))
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="scans per second (open loop)")
    parser.add_argument("--phase-s", type=float, default=10.0, help="seconds of each phase without a fault")
    parser.add_argument("--outage-s", type=float, default=10.0, help="seconds the store stays killed, and stopped")
    parser.add_argument("--output", type=Path, default=Path("bench/FAULTS.md"))
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="pg-faults-") as tmp:
        server = EmbeddedServer(Path(tmp) / "redis").start()
        secret = os.urandom(32)
        gateway: subprocess.Popen[bytes] | None = None
        try:
            redis = connect_redis(server.url)
            world = asyncio.run(_seed(redis, secret, server.url))
            key = SigningKey.from_pem(world[0])
            gateway, port = serve_gateway(server.url, secret, Path(tmp))
            pid = {"value": 0}

            def kill() -> None:
                server.stop(kill=True)

            def restart() -> None:
                # In a thread: start() waits for the socket, and the load generator's loop must not wait with it.
                threading.Thread(target=server.start, daemon=True).start()

            def stop() -> None:
                assert server.process is not None
                pid["value"] = server.process.pid
                os.kill(pid["value"], signal.SIGSTOP)

            def cont() -> None:
                os.kill(pid["value"], signal.SIGCONT)

            run = Run()
            durations = (args.phase_s, args.outage_s, args.phase_s, args.outage_s, args.phase_s)
            asyncio.run(_drive(port, world[1], key, rate=args.rate, durations=durations,
                               faults=(None, kill, restart, stop, cont), run=run))
            _wait_caught_up(port)
            events = asyncio.run(_xlen(server.url))
            report = _render(run, rate=args.rate, durations=durations, events=events, argv=argv)
        finally:
            if gateway is not None:
                stop_gateway(gateway)
            server.stop(kill=True)
    args.output.write_text(report, "utf-8")
    print(report)
    return 0


def serve_gateway(url: str, secret: bytes, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``placegate serve`` on ``url`` in its own process (log in ``tmp``), once it answers: (process, port)."""
    port = _free_port()
    env = {**os.environ, "PLACEGATE_SECRET": secret.hex(), "PLACEGATE_STATUS_BUCKETS": str(BUCKETS),
           "PLACEGATE_DATA_DIR": str(tmp / "gw")}  # fmt: skip
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--redis-url", url, "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "gateway.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return gateway, port


def stop_gateway(gateway: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the gateway drains its requests), then SIGKILL after 20 s."""
    gateway.send_signal(signal.SIGTERM)
    try:
        gateway.wait(timeout=20)
    except subprocess.TimeoutExpired:
        gateway.kill()


def loss_line(run: Run, events: int) -> str:
    """Exception answers against the intake events they left: every acknowledged exception must be there."""
    exceptions = sum(1 for a in run.answers if a.status == 200 and a.reason in EXCEPTION_REASONS)
    return (f"- Exception answers (red holders, replays): {exceptions}; intake events in `pg:dispatch:intake` "
            f"at the end: {events}; lost: {max(0, exceptions - events)}.")  # fmt: skip


async def _seed(redis: object, secret: bytes, url: str) -> tuple[bytes, str]:
    from gateway.privacy.audit import set_trail_secret

    set_trail_secret(secret)  # the registry writes are audited, signed with the trail key (as the CLI does)
    world = await seed_world(redis, secret=secret, status_buckets=BUCKETS, holders=HOLDERS)  # type: ignore[arg-type]
    await _make_red(url, secret)
    await redis.aclose()  # type: ignore[attr-defined]
    return world.health_pem, world.device_token


async def _xlen(url: str) -> int:
    redis = connect_redis(url)
    try:
        return int(await redis.xlen(keyspace.DISPATCH_INTAKE))
    finally:
        await redis.aclose()


if __name__ == "__main__":
    sys.exit(main())
