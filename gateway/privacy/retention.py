"""The retention report a privacy officer reads: per data class, what is stored, the oldest record, the
scheduled expiry, which day partitions and day keys exist and which have already expired, and every
violation (a key that should expire but has no TTL, a day still present past retention).

One SCAN pass classifies every key by prefix (on Redis Cluster, run it against each primary).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

from redis.asyncio import Redis

from gateway import keyspace
from gateway.privacy.audit import AUDIT_RETENTION
from gateway.redisio import redis_errors
from gateway.scan.scanlog import partition_expiry
from policy.purpose import oldest_retained_day

__all__ = ["retention_report"]

_SAMPLE = 2000  # expiry checks per class; counts are exact
@dataclass
class _Class:
    expires: bool
    count: int = 0
    sampled: list[bytes] = field(default_factory=list)


def _day_of_key(key: bytes) -> str:
    return key.decode().split("{d", 1)[1].rstrip("}")


def _iso(ts: int | None) -> str | None:
    return None if ts is None or ts < 0 else datetime.fromtimestamp(ts, UTC).isoformat()


async def _expiretimes(redis: Redis, names: Iterable[bytes]) -> dict[bytes, int]:
    names = list(names)
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.execute_command("EXPIRETIME", name)
    return dict(zip(names, [int(v) for v in await pipe.execute()], strict=True))


async def retention_report(
    redis: Redis, *, now: datetime, retention_days: int, status_ttl_s: int, lookback_days: int = 14
) -> dict[str, object]:
    """The report as JSON-ready data; ``violations`` is empty when retention holds."""
    with redis_errors("retention report"):
        return await _report(redis, now, retention_days, status_ttl_s, lookback_days)


async def _report(redis: Redis, now: datetime, retention_days: int, status_ttl_s: int,
                  lookback_days: int) -> dict[str, object]:
    classes = {c.name: _Class(c.expires) for c in keyspace.DATA_CLASSES}
    days: dict[str, dict[str, bytes]] = {}
    async for key in redis.scan_iter(match="pg:*", count=1000):
        name = keyspace.data_class_of(key.decode()).name
        entry = classes[name]
        entry.count += 1
        if name in ("scan_log", "day_keys"):
            days.setdefault(_day_of_key(key), {})[name] = key
        elif len(entry.sampled) < _SAMPLE:
            entry.sampled.append(key)
    violations: list[str] = []
    floor = oldest_retained_day(now, retention_days)
    partitions = []
    for day in sorted(days):
        present = days[day]
        times = await _expiretimes(redis, present.values())
        log_key = present.get("scan_log")
        oldest = None
        entries = 0
        if log_key is not None:
            entries = int(await redis.xlen(log_key))
            first = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(log_key, count=1))
            if first:
                oldest = datetime.fromtimestamp(int(first[0][1].get(b"t", b"0")) / 1000, UTC).isoformat()
        scheduled = partition_expiry(day, retention_days)
        row = {
            "day": day, "entries": entries, "oldest_record": oldest,
            "partition": "present" if log_key else "absent",
            "day_key": "present" if "day_keys" in present else "absent",
            "expires_at": {n: _iso(t) for n, t in ((n, times[k]) for n, k in present.items())},
            "scheduled_expiry": _iso(scheduled),
        }
        partitions.append(row)
        for _n, k in present.items():
            if times[k] < 0 or times[k] > scheduled:
                violations.append(f"{k.decode()}: expiry missing or later than {_iso(scheduled)}")
        if datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC) < floor:
            violations.append(f"{day}: still present past the {retention_days}-day retention")
        if log_key is not None and "day_keys" not in present:
            row["note"] = "day key gone: these pseudonyms are unlinkable"
    expired_days = []
    for back in range(1, lookback_days + 1):
        day = (floor - timedelta(days=back)).strftime("%Y%m%d")
        if day not in days:
            expired_days.append(day)
    sections: dict[str, object] = {}
    for name, entry in classes.items():
        if name in ("scan_log", "day_keys"):
            continue
        times = await _expiretimes(redis, entry.sampled) if entry.sampled else {}
        ttl_missing = [k.decode() for k, t in times.items() if t == -1]
        if entry.expires and ttl_missing:
            violations += [f"{k}: no expiry" for k in ttl_missing[:20]]
        future = [t for t in times.values() if t >= 0]
        sections[name] = {"keys": entry.count, "sampled": len(times), "without_expiry": len(ttl_missing),
                          "latest_expiry": _iso(max(future)) if future else None}
    sections["status_cache"] = {**cast(dict[str, object], sections["status_cache"]),
                                "limit": f"{status_ttl_s} s after the last update"}
    sections["audit"] = {**cast(dict[str, object], sections["audit"]), **await _audit_span(redis),
                         "kept_at_least": f"{AUDIT_RETENTION.days} days (PIPL Art. 56)"}
    sections["dispatch_intake"] = {**cast(dict[str, object], sections["dispatch_intake"]),
                                   **await _intake_age(redis, now, retention_days)}
    sections["dead_letters"] = {**cast(dict[str, object], sections["dead_letters"]),
                                **await _dead_letter_age(redis, now, retention_days)}
    return {
        "generated_at": now.isoformat(), "retention_days": retention_days,
        "oldest_retained_day": floor.strftime("%Y%m%d"),
        "scan_log": {"partitions": partitions, "expired_days": expired_days},
        "classes": sections, "violations": violations,
    }


async def _audit_span(redis: Redis) -> dict[str, object]:
    first = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keyspace.AUDIT_STREAM, count=1))
    return {"entries": int(await redis.xlen(keyspace.AUDIT_STREAM)),
            "oldest_record": first[0][1][b"when"].decode() if first else None}


async def _intake_age(redis: Redis, now: datetime, retention_days: int) -> dict[str, object]:
    # The intake stream is the dispatch core's queue; events carry a sealed holder reference and its subject hash,
    # so anything older than the scan-log retention is reported as a finding for the dispatch owner.
    first = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keyspace.DISPATCH_INTAKE, count=1))
    if not first:
        return {"entries": 0, "oldest_record": None}
    t = datetime.fromtimestamp(int(first[0][1].get(b"occurred_at", b"0")) / 1000, UTC)
    return {"entries": int(await redis.xlen(keyspace.DISPATCH_INTAKE)), "oldest_record": t.isoformat(),
            "older_than_retention": t < oldest_retained_day(now, retention_days)}


async def _dead_letter_age(redis: Redis, now: datetime, retention_days: int) -> dict[str, object]:
    # Dead letters keep the intake stream's retention; a malformed one may lack its event time, so its age is the
    # stream id's (when it was dead-lettered, never earlier than the event).
    first = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keyspace.DISPATCH_DEADLETTER, count=1))
    if not first:
        return {"entries": 0, "oldest_record": None}
    t = datetime.fromtimestamp(int(first[0][0].split(b"-")[0]) / 1000, UTC)
    return {"entries": int(await redis.xlen(keyspace.DISPATCH_DEADLETTER)), "oldest_record": t.isoformat(),
            "older_than_retention": t < now - timedelta(days=retention_days)}
