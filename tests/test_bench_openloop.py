"""The open-loop generator (bench/openloop.py) keeps its schedule and charges a server's stall to every request
that fell due during it: the property that makes its percentiles free of coordinated omission.

No speed is asserted: the stalled server is built so that the charged latency is at least the stall whatever the
machine's load, and a closed-loop timer (from the write) would have charged it to one request per connection.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from bench.openloop import Schedule, percentile, run

STALL_S = 0.4


def test_the_schedule_is_fixed_before_the_run() -> None:
    s = Schedule(rate=100.0, duration_s=2.0, start=10.0)
    assert s.count == 200
    assert s.due(0) == 10.0 and s.due(150) == pytest.approx(11.5)
    assert s.due_by(9.0) == 0 and s.due_by(10.0) == 1 and s.due_by(10.995) == 100 and s.due_by(99.0) == 200


def test_percentiles_are_nearest_rank() -> None:
    values = [float(i) for i in range(1, 1001)]
    assert percentile(values, 50) == 500.0
    assert percentile(values, 99) == 990.0
    assert percentile(values, 99.9) == 999.0
    assert percentile(values, 100) == 1000.0
    assert percentile([7.0], 99.9) == 7.0


async def test_a_stall_is_charged_to_every_request_due_during_it(tmp_path: Path) -> None:
    gate = asyncio.Event()
    seen = 0

    async def scan(request: web.Request) -> web.Response:
        nonlocal seen
        await request.read()
        seen += 1
        if seen == 1:  # the first request holds every answer back for STALL_S (a GC pause, a slow store)
            asyncio.get_running_loop().call_later(STALL_S, gate.set)
        await gate.wait()
        return web.json_response({"decision": "admit"})

    app = web.Application()
    app.router.add_post("/v1/scan", scan)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_bytes(b"\n".join(b'{"code": "c%d"}' % i for i in range(100)) + b"\n")
    try:
        # 100 requests over 1 s on 4 connections: about 40 fall due during the stall. A closed-loop generator on 4
        # connections would have sent 4 and waited; these are all sent on schedule, pipelined.
        result = await run("127.0.0.1", port, "/v1/scan", "", bodies, rate=100.0, duration_s=1.0, connections=4)
    finally:
        await runner.cleanup()
    assert result["sent"] == 100 and result["answered"] == 100 and result["lost"] == 0 and result["non2xx"] == 0
    assert seen == 100
    # Request i (due at i/100 s) waited at least until the stall ended: STALL_S - i/100. So the 20 due in the first
    # 0.2 s each waited >= 0.2 s, and the 90th percentile (rank 90 of 100) is one of them. A generator that timed
    # from the write, or held requests back while connections were busy, would charge the stall to 4 requests.
    assert result["max_ms"] >= STALL_S * 1000 * 0.95
    assert result["p90_ms"] >= (STALL_S - 0.2) * 1000 * 0.95


def test_the_open_loop_table_shows_the_gateways_cpu_its_utilisation_and_the_bare_control() -> None:
    import argparse

    from bench.run import OpenLoopStep, Run, _render_open_loop

    def result(p99: float) -> dict[str, float]:
        keys = ("sent", "answered", "non2xx", "lost", "p50_ms", "p90_ms", "p999_ms", "max_ms", "lag_p99_ms")
        return {**dict.fromkeys(keys, 1.0), "answered": 1000.0, "p99_ms": p99}

    runs = [Run("full", i, 1, 1.0, 0.0, 0.0, cpu, 0.0, 0, 0) for i, cpu in enumerate((200.0, 300.0, 250.0))]
    steps = [
        OpenLoopStep(0.5, 2000.0, result(4.0), cpu_us=320.0, busy=0.64, control=result(1.5), trips=2.0),
        OpenLoopStep(0.75, 3000.0, result(12.0), cpu_us=300.0, busy=0.9, control=result(2.5), trips=1.5),
    ]
    text = "\n".join(_render_open_loop(argparse.Namespace(connections=64), steps, runs))
    assert "4,000 req/s" in text and "took 250 µs per request" in text  # saturation and the closed-loop median
    rows = [line for line in text.splitlines() if line.startswith("| 50%") or line.startswith("| 75%")]
    assert rows[0].endswith("| 320 | 0.64 | 2.00 | 1.50 | ≤ 5 ms: met |")
    assert rows[1].endswith("| 300 | 0.90 | 1.50 | 2.50 | ≤ 10 ms: missed |")
    assert "Round trips at a steady arrival rate" not in text  # no naive step in this run
    without = "\n".join(_render_open_loop(argparse.Namespace(connections=64), [
        OpenLoopStep(0.5, 2000.0, result(6.0), cpu_us=320.0, busy=0.64, trips=2.0)], runs))
    assert "bare p99" not in without and without.splitlines()[-1].endswith("| 320 | 0.64 | 2.00 | ≤ 5 ms: missed |")


def test_the_open_loop_round_trip_bound_comes_from_naive_and_full_at_the_same_rate() -> None:
    import argparse

    from bench.run import OpenLoopStep, Run, _render_open_loop

    result = {k: 1.0 for k in ("sent", "answered", "non2xx", "lost", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
                               "max_ms", "lag_p99_ms")}
    runs = [Run("full", 1, 1, 1.0, 0.0, 0.0, 250.0, 0.0, 0, 0)]
    steps = [
        OpenLoopStep(0.25, 1000.0, result, cpu_us=400.0, busy=0.4, trips=2.0),
        OpenLoopStep(0.5, 2000.0, result, cpu_us=350.0, busy=0.7, trips=1.8),
        OpenLoopStep(0.25, 1000.0, result, cpu_us=700.0, busy=0.7, trips=8.0, target="naive"),
    ]
    text = "\n".join(_render_open_loop(argparse.Namespace(connections=64), steps, runs))
    # (700 - 400) / (8 - 2) = 50 µs per round trip; folding saves at most half of 2 trips: 50 µs, 12 % of 400.
    assert "made 2.00 Redis round trips per scan for 400 µs" in text and "made 8.00 for 700 µs" in text
    assert "extra round trip, 50 µs" in text and "≤ 50 µs per scan, 12 % of its CPU" in text
    assert sum(line.startswith("| 25%") for line in text.splitlines()) == 1  # the naive step is not a table row


def test_the_capacity_model_computes_its_rows_from_the_runs_and_the_open_loop_headroom() -> None:
    from bench.run import OpenLoopStep, Run, _render_capacity

    def run(variant: str, cpu: float, redis_cpu: float) -> Run:
        return Run(variant, 1, 1, 1.0, 0.0, 0.0, cpu, redis_cpu, 0, 0, stored_bytes=300.0)

    runs = [run("full", 200.0, 10.0), run("replay", 400.0, 20.0), run("cluster", 360.0, 30.0)]
    result = {k: 1.0 for k in ("p50_ms", "p999_ms", "max_ms", "lag_p99_ms", "answered", "non2xx", "lost")}
    steps = [
        OpenLoopStep(0.25, 1000.0, {**result, "p99_ms": 4.0}),
        OpenLoopStep(0.5, 2000.0, {**result, "p99_ms": 9.0}),
        OpenLoopStep(0.75, 3000.0, {**result, "p99_ms": 30.0}),
        OpenLoopStep(0.9, 3600.0, {**result, "p99_ms": 2.0}, target="naive"),  # not the full path: no headroom
    ]
    text = "\n".join(_render_capacity(runs, {"bytes_per_holder": 40.0, "load_rate": 250_000.0}, steps))
    # 5 % exceptions: 0.95 x 200 + 0.05 x 400 = 210 µs; 50,000 x 210 µs = 10.5 cores; ÷ 50 % (p99 ≤ 10 ms) = 21.0
    assert "| 210 µs |" in text and "| 10.5 |" in text and "÷ 50%" in text and "| 21.0 |" in text
    # On the cluster: 210 x 360 / 200 = 378 µs, 18.9 cores, 37.8 for the headroom; Redis 30 µs: 1.50 cores.
    assert "50,000 x 378 µs" in text and "| 18.9 |" in text and "| 37.8 |" in text and "1.50 cores" in text
    assert "| 1.00 GB |" in text and "| 100 s |" in text  # 25 M x 40 B; 25 M ÷ 250,000 /s
