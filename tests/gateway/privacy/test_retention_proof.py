"""Retention, proven with a controllable clock: scans older than the retention period leave no record and no
day key, everything younger keeps both with the scheduled expiry, and nothing left in Redis links an old
record to its holder (crypto-shredding)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.keyspace import day_key, scan_log_key
from gateway.privacy.tracing import pseudonym, trace_holder
from gateway.scan.scanlog import day_of, partition_expiry
from gateway.scan.state import SCANNER
from tests.gateway.conftest import PLACES, World
from tests.gateway.privacy.test_privacy_storage import _dump

RETENTION = 21


async def test_records_and_day_keys_past_retention_are_gone_and_nothing_links_them(world: World) -> None:
    scanner = world.client.app[SCANNER]
    now = datetime.now(UTC)
    ages = range(0, 31)
    for age in ages:
        at = now - timedelta(days=age)
        for n in range(3):
            holder = f"h{age:02d}-{n}"
            await scanner.scan(world.code(holder, now=at), PLACES[n], f"dev-{'abc'[n]}", now=at)
    kept = [a for a in ages if a <= RETENTION]
    gone = [a for a in ages if a > RETENTION]
    for age in ages:
        day = day_of(now - timedelta(days=age))
        present = await world.redis.exists(scan_log_key(day), day_key(day))
        assert present == (2 if age in kept else 0), (age, present)
        if age in kept:
            expected = partition_expiry(day, RETENTION)
            for key in (scan_log_key(day), day_key(day)):
                assert await world.redis.execute_command("EXPIRETIME", key) == expected
    stored = await _dump(world.redis)
    everything = b"\n".join(k + b" " + v for k, (_, v) in stored.items())
    day_keys = [v for k, (_, v) in stored.items() if k.startswith(b"pg:daykey:")]
    assert len(day_keys) == len(kept)
    for age in gone:
        for n in range(3):
            holder = f"h{age:02d}-{n}"
            assert holder.encode() not in everything
            # No surviving day key turns this holder into any pseudonym that is stored anywhere.
            assert all(pseudonym(k, holder) not in everything for k in day_keys), holder
    # The retained holders still link (the test can tell linkable from unlinkable).
    for age in kept:
        key = stored[day_key(day_of(now - timedelta(days=age))).encode()][1]
        assert pseudonym(key, f"h{age:02d}-0") in everything


async def test_a_trace_of_an_expired_day_finds_nothing_to_link(world: World) -> None:
    scanner = world.client.app[SCANNER]
    now = datetime.now(UTC)
    old = now - timedelta(days=RETENTION + 2)
    await scanner.scan(world.code("holder-x", now=old), PLACES[0], "dev-a", now=old)
    result = await trace_holder(world.redis, "holder-x", since=old - timedelta(hours=1), until=old + timedelta(hours=1))
    assert result.visits == [] and set(result.days.values()) == {"absent"}


async def test_the_oldest_retained_day_is_kept_until_its_scheduled_expiry(world: World) -> None:
    scanner = world.client.app[SCANNER]
    now = datetime.now(UTC)
    edge = now - timedelta(days=RETENTION)
    await scanner.scan(world.code("holder-e", now=edge), PLACES[2], "dev-c", now=edge)
    day = day_of(edge)
    ttl = await world.redis.ttl(day_key(day))
    start_of_today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert 0 < ttl <= (start_of_today + timedelta(days=1) - now).total_seconds() + 1
    result = await trace_holder(world.redis, "holder-e", since=edge - timedelta(minutes=1), until=now)
    assert [v.place for v in result.visits] == ["place-c"]
