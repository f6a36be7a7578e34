"""An open-loop load generator: ``python -m bench.openloop``, requests at a fixed arrival rate.

wrk is closed-loop: each connection sends its next request only when the previous answer is in, so when the server
stalls the generator stalls with it and the requests that *would* have arrived during the stall are never sent, or
timed from when they finally were. A turnstile queue does not wait like that: people keep arriving. This generator
fixes the schedule before the run (request ``i`` is due at ``start + i / rate``) and times every answer from its
**due time**, not from when it was written, so a stall is charged to every request that arrived during it
(coordinated omission avoided, as Gil Tene's wrk2 does with its constant-throughput mode).

It never waits for an answer before sending: requests are written on ``--connections`` keep-alive HTTP/1.1
connections, pipelined (aiohttp answers a connection's requests in order), each to the connection with the fewest
requests in flight. If the generator itself falls behind (its own CPU), the request is still timed from its due
time, and the lag is reported (``lag_p99_ms``, ``lag_max_ms``), so a reader can tell the generator's delay from the
server's. One JSON line on stdout: sent, answered, non-2xx, lost (no answer within the drain time) and p50 / p90 /
p99 / p99.9 / max latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import orjson

__all__ = ["Schedule", "main", "percentile"]


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of already sorted values (p in 0..100); NaN for none."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100), at least the first
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


class Schedule:
    """Due times of a constant arrival rate: request ``i`` at ``start + i / rate``."""

    def __init__(self, rate: float, duration_s: float, start: float) -> None:
        self.rate, self.start = rate, start
        self.count = int(rate * duration_s)

    def due(self, i: int) -> float:
        return self.start + i / self.rate

    def due_by(self, now: float) -> int:
        """How many requests are due at ``now`` (all of them at the end)."""
        return min(self.count, int((now - self.start) * self.rate) + 1) if now >= self.start else 0


class _Conn(asyncio.Protocol):
    """One keep-alive connection: writes requests, parses answers in order, matches each to its due time."""

    def __init__(self, sink: _Results) -> None:
        self.sink = sink
        self.due: collections.deque[float] = collections.deque()
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.due.append(due)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buf[:head_end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            status = int(head[9:12])
            del self.buf[:end]
            self.sink.answer(self.due.popleft(), status)


class _Results:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.non2xx = 0

    def answer(self, due: float, status: int) -> None:
        self.latencies.append(time.perf_counter() - due)
        if not 200 <= status < 300:
            self.non2xx += 1


def _requests(bodies: Path, path: str, token: str) -> list[bytes]:
    out = []
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    for body in bodies.read_bytes().splitlines():
        if body:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            out.append(head.encode() + body)
    return out


async def run(
    host: str, port: int, path: str, token: str, bodies: Path, rate: float, duration_s: float, connections: int,
    drain_s: float = 5.0,
) -> dict[str, float]:  # fmt: skip
    loop = asyncio.get_running_loop()
    requests = _requests(bodies, path, token)
    sink = _Results()
    conns: list[_Conn] = []
    for _ in range(connections):
        _, proto = await loop.create_connection(lambda: _Conn(sink), host, port)
        conns.append(proto)
    schedule = Schedule(rate, duration_s, time.perf_counter() + 0.05)
    sent = 0
    while sent < schedule.count:
        now = time.perf_counter()
        due_now = schedule.due_by(now)
        while sent < due_now:
            due = schedule.due(sent)
            sink.lags.append(now - due)
            min(conns, key=lambda c: len(c.due)).send(requests[sent % len(requests)], due)
            sent += 1
        if sent < schedule.count:
            # Sleep until the next due time; asyncio's timer fires on the following loop turn at the earliest, so
            # a late wake-up sends what fell due meanwhile at once (and its lateness shows in the lag figures).
            await asyncio.sleep(max(0.0, schedule.due(sent) - time.perf_counter()))
    drain_until = time.perf_counter() + drain_s
    while any(c.due for c in conns) and time.perf_counter() < drain_until:
        await asyncio.sleep(0.01)
    lost = sum(len(c.due) for c in conns)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    lat = sorted(sink.latencies)
    lags = sorted(sink.lags)
    ms = 1000.0
    return {
        "rate": rate,
        "duration_s": duration_s,
        "sent": float(sent),
        "answered": float(len(lat)),
        "non2xx": float(sink.non2xx),
        "lost": float(lost),
        "p50_ms": percentile(lat, 50) * ms,
        "p90_ms": percentile(lat, 90) * ms,
        "p99_ms": percentile(lat, 99) * ms,
        "p999_ms": percentile(lat, 99.9) * ms,
        "max_ms": (lat[-1] if lat else float("nan")) * ms,
        "lag_p99_ms": percentile(lags, 99) * ms,
        "lag_max_ms": (lags[-1] if lags else float("nan")) * ms,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/scan")
    parser.add_argument("--token", default="")
    parser.add_argument("--bodies", type=Path, required=True, help="one JSON body per line, each sent once")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.connections <= 0:
        parser.error("--rate, --duration and --connections must be positive")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the generator still runs, only slower
        pass
    result = asyncio.run(
        run(args.host, args.port, args.path, args.token, args.bodies, args.rate, args.duration, args.connections)
    )
    sys.stdout.write("OPENLOOP " + orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
