"""The naive benchmark variant (bench/naive.py) must do what the real scan store does, only one awaited command at a
time: otherwise ``full / naive`` compares two different jobs. (It once lacked the ``marks`` argument the scanner
passes, and every naive scan was a 500.)"""

from __future__ import annotations

import inspect
import os

from redis.asyncio import Redis

from bench.naive import NaiveStore
from gateway import keyspace
from gateway.batcher import CommandBatcher
from gateway.scan.store import ScanRecord, ScanStore
from gateway.status.cache import StatusLocator

METHODS = ("lookup_scans", "day_keys", "record_scans")


def test_the_naive_store_takes_what_the_scan_store_takes() -> None:
    for name in METHODS:
        assert inspect.signature(getattr(NaiveStore, name)) == inspect.signature(getattr(ScanStore, name)), name


async def _stored(redis: Redis) -> dict[str, object]:
    out: dict[str, object] = {}
    for raw in sorted([k async for k in redis.scan_iter(count=1000)]):  # every primary of a cluster (KEYS asks one)
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        ttl = await redis.ttl(key)
        if kind == "stream":
            entries = await redis.xrange(key)
            out[key] = (kind, ttl, [fields for _, fields in entries])
        elif kind == "hash":
            out[key] = (kind, ttl, await redis.hgetall(key))
        else:
            out[key] = (kind, ttl, await redis.get(key))
    return out


async def test_the_naive_store_writes_what_the_scan_store_writes(redis: Redis) -> None:
    day, expire_at = "20991231", 4_102_444_800 + 86_400 * 30
    event = ("event_id", "e1", "event_class", "replayed", "reason", "replayed", "place", "place-a", "device", "d1")
    records: list[ScanRecord] = [
        (day, expire_at, ("scan", "s1", "decision", "admit"), None),
        (day, expire_at, ("scan", "s2", "decision", "deny"), event),
    ]
    marks = [("pg:test:mark:" + os.urandom(4).hex(), "place-a", 300)]
    locator = StatusLocator(bytes(32), 1024)
    written = []
    for store_type in (ScanStore, NaiveStore):
        await redis.flushdb()
        batcher = CommandBatcher(redis)
        store = store_type(redis, batcher, locator)
        await store.record_scans(records, marks=marks, timeout_s=5.0)
        await batcher.aclose()
        written.append(await _stored(redis))
    real, naive = written
    assert keyspace.scan_log_key(day) in real and keyspace.place_exceptions_key("place-a", day) in real
    assert {k: (v[0], v[2]) for k, v in naive.items()} == {k: (v[0], v[2]) for k, v in real.items()}  # kinds, values
    # TTLs are read after each run: the same, give or take the second boundary the two runs may straddle.
    assert all(abs(int(naive[k][1]) - int(real[k][1])) <= 2 for k in real), (naive, real)
