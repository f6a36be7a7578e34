"""Privacy by construction, proven by scanning what was stored (Redis keys and values, logs, metrics)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from crypto.native import Colour
from gateway.dispatch.runtime import DISPATCH
from gateway.dispatch.worker import trim_to_retention
from gateway.keyspace import REGISTRY_PREFIXES, day_key, scan_log_key
from gateway.scan.scanlog import day_of, partition_expiry
from gateway.scan.state import SCANNER
from tests.gateway.conftest import PLACES, World


async def _dump(redis: Redis) -> dict[bytes, tuple[int, bytes]]:
    """Every key with its TTL (seconds; -1 none) and a byte dump of its whole value, whatever its type."""
    out: dict[bytes, tuple[int, bytes]] = {}
    async for key in redis.scan_iter(count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            value = await redis.get(key) or b""
        elif kind == "hash":
            value = b"|".join(k + b"=" + v for k, v in (await redis.hgetall(key)).items())
        elif kind == "set":
            value = b"|".join(sorted(await redis.smembers(key)))
        elif kind == "zset":  # the dispatch due index: case ids scored by a due instant
            value = b"|".join(m + b"=" + str(s).encode() for m, s in await redis.zrange(key, 0, -1, withscores=True))
        elif kind == "stream":
            value = b"|".join(
                eid + b":" + b",".join(k + b"=" + v for k, v in fields.items())
                for eid, fields in await redis.xrange(key)
            )
        else:
            pytest.fail(f"unexpected key type {kind} for {key!r}")
        out[key] = (await redis.ttl(key), value)
    return out


async def test_raw_holder_refs_and_code_strings_never_reach_redis_logs_or_metrics(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    holders = [f"citizen-{i:05d}" for i in range(120)]
    for i, holder in enumerate(holders):
        await world.set_status(holder, Colour.RED if i % 10 == 0 else Colour.GREEN)
    codes: list[str] = []
    devices = ["dev-a", "dev-b", "dev-c"]
    for i, holder in enumerate(holders):
        code = world.code(holder)
        codes.append(code)
        await world.scan(code, who=devices[i % 3])
        if i % 4 == 0:
            await world.scan(code, who=devices[(i + 1) % 3])  # shared
        if i % 5 == 0:
            await world.scan(code, who=devices[i % 3])  # replayed
    for holder in holders[:60]:  # tampered copies still name the holder in their (unsigned) bytes
        code = world.code(holder)
        codes.append(code)
        await world.scan(code[:-3] + ("AAA" if not code.endswith("AAA") else "BBB"), who="dev-c")
    metrics = await (await world.client.get("/metrics")).text()

    stored = await _dump(world.redis)
    assert sum(1 for k in stored if k.startswith(b"pg:log:")) == 1
    everything = b"\n".join(k + b" " + v for k, (_, v) in stored.items())
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for holder in holders:
        assert holder.encode() not in everything, holder
        assert holder not in logs and holder not in metrics
    for code in codes:
        body = code.split(":", 1)[1]
        assert body[:40].encode() not in everything
        assert body[:40] not in logs and body[:40] not in metrics
    for secret in [*world.tokens.values(), *(p.place_id for p in PLACES)]:  # the answers' counts neither
        assert secret not in metrics, secret
    # Every key that is not registry configuration carries an expiry (retention is policy).
    for key, (ttl, _) in stored.items():
        if not key.decode().startswith(REGISTRY_PREFIXES):
            assert ttl > 0, key


async def test_day_partition_and_day_key_carry_the_retention_expiry(world: World) -> None:
    await world.set_status("holder-1")
    await world.scan(world.code("holder-1"))
    now = datetime.now(UTC)
    day = day_of(now)
    expected = partition_expiry(day, retention_days=21)
    start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    assert expected == int((start + timedelta(days=22)).timestamp())
    log_ttl = await world.redis.ttl(scan_log_key(day))
    key_ttl = await world.redis.ttl(day_key(day))
    for ttl in (log_ttl, key_ttl):
        assert abs((time.time() + ttl) - expected) <= 2
    assert abs(log_ttl - key_ttl) <= 1
    # The two share a hash tag, so on Redis Cluster they live (and expire) on the same node.
    assert scan_log_key(day).split("{")[1] == day_key(day).split("{")[1]


async def test_a_scan_older_than_retention_leaves_no_record_and_no_day_key(world: World) -> None:
    """With a controllable clock: a day past retention has already expired, log and key alike."""
    scanner = world.client.app[SCANNER]
    past = datetime.now(UTC) - timedelta(days=23)
    code = world.code("holder-1", now=past)
    outcome = await scanner.scan(code, PLACES[2], "dev-c", now=past)
    assert outcome.decision.reason == "status_unknown"
    day = day_of(past)
    assert await world.redis.exists(scan_log_key(day), day_key(day)) == 0


async def test_pseudonyms_differ_between_days_for_the_same_holder(world: World) -> None:
    scanner = world.client.app[SCANNER]
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    await scanner.scan(world.code("holder-9", now=now), PLACES[2], "dev-c", now=now)
    await scanner.scan(world.code("holder-9", now=yesterday), PLACES[2], "dev-c", now=yesterday)
    today_log = await world.redis.xrange(scan_log_key(day_of(now)))
    past_log = await world.redis.xrange(scan_log_key(day_of(yesterday)))
    p1, p2 = today_log[0][1][b"pseudonym"], past_log[0][1][b"pseudonym"]
    assert len(p1) == 32 and len(p2) == 32 and p1 != p2
    assert today_log[0][1][b"purpose"] == b"epidemic_prevention"


async def test_intake_events_older_than_retention_are_trimmed(world: World) -> None:
    """The intake stream has no TTL (it is a queue) but no event in it outlives the scan-log retention: the dispatch
    sweep trims it by time (a scan no longer does: it cannot know what the consumer group still needs)."""
    old_ms = int((datetime.now(UTC) - timedelta(days=25)).timestamp() * 1000)
    await world.redis.xadd("pg:dispatch:intake", {"event_id": "old", "pseudonym": "x"}, id=f"{old_ms}-0")
    await world.set_status("holder-1", Colour.RED)
    await world.scan(world.code("holder-1"))
    await trim_to_retention(world.client.app[DISPATCH].store, now=datetime.now(UTC))
    ids = [fields[b"event_id"] for _, fields in await world.redis.xrange("pg:dispatch:intake")]
    assert b"old" not in ids and len(ids) == 1
