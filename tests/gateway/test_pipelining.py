"""The hot path never awaits Redis once per command: a scan's commands go out as pipelined groups, and the
groups of concurrent scans share one pipeline per event-loop turn."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from gateway.scan import Scanner
from gateway.state import SCANNER, STORE
from gateway.store import Store
from tests.gateway.conftest import PLACES, World


async def _warm_scanner(world: World, holders: list[str], now: datetime) -> tuple[Scanner, Store, list[str]]:
    """Green statuses and a fresh code for each holder, after one scan that creates the day key."""
    for holder in holders:
        await world.set_status(holder)
    scanner = world.client.app[SCANNER]
    await scanner.scan(world.code("warm-up"), PLACES[2], "dev-c", now=now)
    return scanner, world.client.app[STORE], [world.code(h) for h in holders]


async def test_one_scan_is_two_pipelined_groups_not_one_await_per_command(world: World) -> None:
    await world.set_status("holder-1")
    store = world.client.app[STORE]
    now = datetime.now(UTC)
    await world.client.app[SCANNER].scan(world.code("holder-0"), PLACES[2], "dev-c", now=now)  # creates the day key
    flushes, commands = store.batcher.flushes, store.batcher.commands
    outcome = await world.client.app[SCANNER].scan(world.code("holder-1"), PLACES[2], "dev-c", now=now)
    assert outcome.decision.reason == "ok"
    # lookup (HGET status + SET NX GET nonce) and record (XADD log + EXPIREAT): two round trips, four commands
    assert (store.batcher.flushes - flushes, store.batcher.commands - commands) == (2, 4)


async def test_concurrent_scans_share_pipelines_and_one_verification_run(world: World) -> None:
    holders = [f"holder-{i}" for i in range(40)]
    now = datetime.now(UTC)
    scanner, store, codes = await _warm_scanner(world, holders, now)
    flushes, commands = store.batcher.flushes, store.batcher.commands
    runs, groups = scanner.verifier.runs, scanner.verifier.groups
    outcomes = await asyncio.gather(*(scanner.scan(code, PLACES[2], "dev-c", now=now) for code in codes))
    assert all(o.decision.reason == "ok" for o in outcomes)
    assert store.batcher.commands - commands == 4 * len(holders)
    # 160 commands in a handful of pipelines: one per loop turn, not one per command or per scan.
    assert store.batcher.flushes - flushes <= 4
    # The signatures of one loop turn's scans are checked back to back, in one run (gateway/turnbatch.py).
    assert (scanner.verifier.runs - runs, scanner.verifier.groups - groups) == (1, len(holders))


async def test_a_batch_is_two_groups_whatever_its_size(world: World) -> None:
    now = datetime.now(UTC)
    scanner, store, codes = await _warm_scanner(world, [f"holder-{i}" for i in range(16)], now)
    flushes, commands = store.batcher.flushes, store.batcher.commands
    outcomes = await scanner.scan_many(codes, PLACES[2], "dev-c", now=now)
    assert [o.decision.reason for o in outcomes if not isinstance(o, Exception)] == ["ok"] * 16
    # lookups: HGET + SET NX GET per code; records: XADD per code and one EXPIREAT for the partition
    assert (store.batcher.flushes - flushes, store.batcher.commands - commands) == (2, 16 * 2 + 16 + 1)


async def test_a_batch_whose_lookup_times_out_answers_every_code_degraded(world: World) -> None:
    for holder in ("holder-a", "holder-b"):
        await world.set_status(holder)
    scanner = world.client.app[SCANNER]
    scanner.redis_timeout_s = 0.0  # every group's deadline passes before Redis can answer
    outcomes = await scanner.scan_many(
        [world.code("holder-a"), "not a code", world.code("holder-b")], PLACES[2], "dev-c", now=datetime.now(UTC)
    )
    answers = [(o.decision.reason, o.decision.degraded) if not isinstance(o, Exception) else "error" for o in outcomes]
    assert answers == [("ok", True), "error", ("ok", True)]  # place C admits a green signed colour, degraded
