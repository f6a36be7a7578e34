"""The hot path never awaits Redis once per command: a scan's commands go out as pipelined groups, and the
groups of concurrent scans share one pipeline per event-loop turn."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any, cast

import pytest

from gateway import keyspace
from gateway.scan.scanlog import day_of, partition_expiry
from gateway.scan.scanner import Scanner, ScanOutcome
from gateway.scan.state import SCAN_STORE, SCANNER
from gateway.scan.store import ScanStore
from tests.gateway.conftest import PLACES, World


async def _warm_scanner(world: World, holders: list[str], now: datetime) -> tuple[Scanner, ScanStore, list[str]]:
    """Green statuses and a fresh code for each holder, after one scan that creates the day key."""
    for holder in holders:
        await world.set_status(holder)
    scanner = world.client.app[SCANNER]
    await scanner.scan(world.code("warm-up"), PLACES[2], "dev-c", now=now)
    return scanner, world.client.app[SCAN_STORE], [world.code(h) for h in holders]


async def test_one_scan_is_two_pipelined_groups_not_one_await_per_command(world: World) -> None:
    await world.set_status("holder-1")
    store = world.client.app[SCAN_STORE]
    now = datetime.now(UTC)
    await world.client.app[SCANNER].scan(world.code("holder-0"), PLACES[2], "dev-c", now=now)  # creates the day key
    flushes, commands = store.batcher.flushes, store.batcher.commands
    outcome = await world.client.app[SCANNER].scan(world.code("holder-1"), PLACES[2], "dev-c", now=now)
    assert outcome.decision.reason == "ok"
    # lookup (HGET status + SET NX GET nonce + SET NX GET day key, read again every turn) and record (XADD log +
    # EXPIREAT): two round trips, five commands
    assert (store.batcher.flushes - flushes, store.batcher.commands - commands) == (2, 5)


async def test_concurrent_scans_share_pipelines_and_one_verification_run(world: World) -> None:
    holders = [f"holder-{i}" for i in range(40)]
    now = datetime.now(UTC)
    scanner, store, codes = await _warm_scanner(world, holders, now)
    flushes, commands = store.batcher.flushes, store.batcher.commands
    runs, groups = scanner.turns.runs, scanner.turns.groups
    outcomes = await asyncio.gather(*(scanner.scan(code, PLACES[2], "dev-c", now=now) for code in codes))
    assert all(o.decision.reason == "ok" for o in outcomes)
    # The scans of one loop turn go through the phases together (gateway/scan/turnbatch.py): their signatures in
    # one run, then one pipeline of every lookup (HGET + SET NX GET each) and one of every record (XADD each,
    # and one EXPIREAT for the day's partition), the day key read once for the turn: two round trips, not two
    # per scan or one per command.
    assert (scanner.turns.runs - runs, scanner.turns.groups - groups) == (1, len(holders))
    assert (store.batcher.flushes - flushes, store.batcher.commands - commands) == (2, 3 * len(holders) + 2)


async def test_a_batch_is_two_groups_whatever_its_size(world: World) -> None:
    now = datetime.now(UTC)
    scanner, store, codes = await _warm_scanner(world, [f"holder-{i}" for i in range(16)], now)
    flushes, commands = store.batcher.flushes, store.batcher.commands
    outcomes = await scanner.scan_many(codes, PLACES[2], "dev-c", now=now)
    assert [o.decision.reason for o in outcomes if not isinstance(o, Exception)] == ["ok"] * 16
    # lookups: HGET + SET NX GET per code and the day key's SET NX GET; records: XADD per code and one EXPIREAT
    assert (store.batcher.flushes - flushes, store.batcher.commands - commands) == (2, 16 * 2 + 1 + 16 + 1)


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


async def test_the_scans_of_one_turn_keep_their_own_place_device_and_day(world: World) -> None:
    scanner = world.client.app[SCANNER]
    midnight = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(0), UTC)
    before, after = midnight - timedelta(milliseconds=1), midnight + timedelta(milliseconds=1)
    await world.set_status("holder-x")
    shown_twice, next_day = world.code("holder-x", now=before), world.code("holder-y", now=after)
    runs = scanner.turns.runs
    first, copy, late = await asyncio.gather(
        scanner.scan(shown_twice, PLACES[1], "dev-b", now=before),
        scanner.scan(shown_twice, PLACES[2], "dev-c", now=before),
        scanner.scan(next_day, PLACES[2], "dev-c", now=after),
    )
    assert scanner.turns.runs - runs == 1  # one turn, three places, devices and times
    assert (first.decision.reason, copy.decision.reason) == ("ok", "code_shared")
    assert (first.checked_at, late.checked_at) == (before, after)
    # The replay memory holds the place each code was first shown at in that turn: same place, a replay.
    again = await scanner.scan(next_day, PLACES[2], "dev-c", now=after)
    assert again.decision.reason == "replayed"
    logged: dict[str, list[tuple[bytes, bytes, bytes]]] = {}
    for when in (before, after):
        day = day_of(when)
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await world.redis.xrange(keyspace.scan_log_key(day)))
        logged[day] = [(e[b"place"], e[b"device"], e[b"reason"]) for _, e in entries]
        # Each partition expires with its own day, whichever turn wrote to it.
        assert await world.redis.expiretime(keyspace.scan_log_key(day)) == partition_expiry(day, 21)
    assert logged == {
        day_of(before): [(b"place-b", b"dev-b", b"ok"), (b"place-c", b"dev-c", b"code_shared")],
        day_of(after): [(b"place-c", b"dev-c", late.decision.reason.encode()), (b"place-c", b"dev-c", b"replayed")],
    }


async def test_a_defect_in_one_request_fails_that_request_only(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    scanner, _, (good, doomed) = await _warm_scanner(world, ["holder-1", "holder-2"], now)
    verify = scanner._verify

    def defective(code: str, *args: Any) -> Any:
        if code == doomed:
            raise ZeroDivisionError("defect")
        return verify(code, *args)

    monkeypatch.setattr(scanner, "_verify", defective)
    answers = await asyncio.gather(
        scanner.scan(good, PLACES[2], "dev-c", now=now), scanner.scan(doomed, PLACES[2], "dev-c", now=now),
        return_exceptions=True,
    )
    assert isinstance(answers[0], ScanOutcome) and answers[0].decision.reason == "ok"
    assert isinstance(answers[1], ZeroDivisionError)
