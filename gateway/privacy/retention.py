"""The retention report a privacy officer reads: per data class what is stored, the oldest record, the latest
expiry, which day partitions and day keys exist and which have already expired, and every violation.

One SCAN pass classifies every ``pg:`` key by ``gateway.keyspace.DATA_CLASSES`` and checks its expiry against
the class's limit under the running configuration (on Redis Cluster, run it against each primary). A violation
names the class, the key (key names carry no personal data: the class patterns admit only days, digests and
ids) and the problem:

- ``unclassified``: a ``pg:`` key no class names (nobody said how long it may live);
- ``no_expiry``: a key of a class that must expire carries no TTL;
- ``expires_too_late``: its TTL passes the class's limit (a day partition or day key past end of day +
  retention, a status bucket past the status TTL, a holder reference or dead letters past the retention, ...);
- ``past_retention``: a day partition or day key of a day older than the retention is still present;
- ``entries_past_retention``: the intake stream or the dead letters hold an entry older than the retention.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

from redis.asyncio import Redis

from crypto.native import LEEWAY_S, MAX_LIFETIME_S
from gateway import keyspace
from gateway.privacy.audit import AUDIT_RETENTION
from gateway.redisio import redis_errors
from gateway.scan.scanlog import partition_expiry
from policy.purpose import APPROVAL_MAX_S, oldest_retained_day

__all__ = ["PROBLEMS", "TOLERANCE_S", "retention_report"]

PROBLEMS = ("unclassified", "no_expiry", "expires_too_late", "past_retention", "entries_past_retention")
# Clock difference between this process and the store, and whole-second expiries (EXPIREAT ... + 1).
TOLERANCE_S = 5
_BATCH = 1000  # keys per SCAN page and per pipelined expiry check
_LISTED = 1000  # violations listed per class and problem; ``violation_counts`` has them all
_DAY_CLASSES = ("scan_log", "day_keys")


@dataclass(frozen=True, slots=True)
class _Limits:
    retention_s: int
    status_ttl_s: int
    dcc_replay_window_s: int

    def of(self, limit: keyspace.Limit | int) -> int | None:
        """The longest TTL in seconds, ``None`` for "none" and for "day_end" (checked against the day)."""
        if isinstance(limit, int):
            return limit
        return {
            "retention": self.retention_s,
            "status_ttl": self.status_ttl_s,
            "code_lifetime": MAX_LIFETIME_S + 2 * LEEWAY_S,  # a code's life, issued up to a leeway early
            "dcc_replay_window": self.dcc_replay_window_s,
            "approval": APPROVAL_MAX_S + 1,  # EXPIREAT rounds the approval's end up to the next second
        }.get(limit)


@dataclass
class _Class:
    count: int = 0
    without_expiry: int = 0
    latest_ms: int = -1


@dataclass
class _Findings:
    items: list[dict[str, object]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, data_class: str | None, key: str, problem: str, detail: str) -> None:
        tally = f"{data_class or 'unclassified'}/{problem}"
        self.counts[tally] = self.counts.get(tally, 0) + 1
        if self.counts[tally] <= _LISTED:
            self.items.append({"class": data_class, "key": key, "problem": problem, "detail": detail})


def _day_of_key(key: str) -> str:
    # keyspace.case_notes_key and place_exceptions_key: the day is the name's last part
    if key.startswith(("pg:casenote:", "pg:place-exceptions:")):
        return key.rsplit(":", 1)[1]
    return key.split("{d", 1)[1].rstrip("}")


def _iso(ts: float | None) -> str | None:
    return None if ts is None or ts < 0 else datetime.fromtimestamp(ts, UTC).isoformat()


async def retention_report(
    redis: Redis, *, now: datetime, retention_days: int, status_ttl_s: int, dcc_replay_window_s: int = 60,
    grace_s: float = 0.0, lookback_days: int = 14,
) -> dict[str, object]:
    """The report as JSON-ready data; ``violations`` is empty when retention holds.

    :param grace_s: how long an intake or dead-letter entry may outlive the retention before it is a violation
        (the background trim's period: it removes such entries every ``retention_trim_s``).
    """
    limits = _Limits(retention_days * 24 * 3600, status_ttl_s, dcc_replay_window_s)
    with redis_errors("retention report"):
        return await _report(redis, now, retention_days, limits, grace_s, lookback_days)


async def _pages(redis: Redis) -> AsyncIterator[tuple[list[str], list[int], int]]:
    """Every ``pg:`` key in pages, with its expiry (Unix ms; -1 none, -2 gone since) and the server's time."""
    page: list[bytes] = []

    async def checked() -> tuple[list[str], list[int], int]:
        async with redis.pipeline(transaction=False) as pipe:
            for name in page:
                pipe.execute_command("PEXPIRETIME", name)
            pipe.execute_command("TIME")  # not pipe.time(): a cluster pipeline refuses it by name
            replies = await pipe.execute()
        seconds, micros = replies[-1]
        return [k.decode(errors="backslashreplace") for k in page], [int(t) for t in replies[:-1]], \
            int(seconds) * 1000 + int(micros) // 1000

    async for key in redis.scan_iter(match="pg:*", count=_BATCH):
        page.append(key)
        if len(page) == _BATCH:
            yield await checked()
            page = []
    if page:
        yield await checked()


async def _report(redis: Redis, now: datetime, retention_days: int, limits: _Limits, grace_s: float,
                  lookback_days: int) -> dict[str, object]:
    classes = {c.name: _Class() for c in keyspace.DATA_CLASSES}
    unclassified = _Class()
    findings = _Findings()
    days: dict[str, dict[str, tuple[str, int]]] = {}
    tolerance_ms = TOLERANCE_S * 1000
    async for names, expiries, server_ms in _pages(redis):
        for name, expiry in zip(names, expiries, strict=True):
            if expiry == -2:
                continue  # expired or deleted since the SCAN saw it
            data_class = keyspace.data_class_of(name)
            entry = unclassified if data_class is None else classes[data_class.name]
            entry.count += 1
            entry.without_expiry += expiry == -1
            entry.latest_ms = max(entry.latest_ms, expiry)
            if data_class is None:
                findings.add(None, name, "unclassified", "no class in gateway/keyspace.py DATA_CLASSES names this key")
                continue
            if data_class.name in _DAY_CLASSES:
                days.setdefault(_day_of_key(name), {})[data_class.name] = (name, expiry)
            if expiry == -1:
                if data_class.expires:
                    findings.add(data_class.name, name, "no_expiry", "a key of this class must carry a TTL")
                continue
            if data_class.limit == "day_end":
                scheduled = partition_expiry(_day_of_key(name), retention_days)
                if expiry > scheduled * 1000 + tolerance_ms:
                    findings.add(data_class.name, name, "expires_too_late",
                                 f"expires {_iso(expiry / 1000)}, after end of day + {retention_days} days "
                                 f"({_iso(scheduled)})")
                continue
            bound_s = limits.of(data_class.limit)
            if bound_s is not None and expiry - server_ms > bound_s * 1000 + tolerance_ms:
                findings.add(data_class.name, name, "expires_too_late",
                             f"expires in {(expiry - server_ms) // 1000} s, more than the class's {bound_s} s")
    floor = oldest_retained_day(now, retention_days)
    partitions = []
    for day in sorted(days):
        present = days[day]
        partitions.append(await _partition(redis, day, present, retention_days))
        if datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC) < floor:
            for class_name, (name, _) in present.items():
                findings.add(class_name, name, "past_retention",
                             f"day {day} is still present past the {retention_days}-day retention")
    expired_days = [
        d for back in range(1, lookback_days + 1)
        if (d := (floor - timedelta(days=back)).strftime("%Y%m%d")) not in days
    ]
    sections: dict[str, object] = {}
    for data_class in keyspace.DATA_CLASSES:  # every class is named, the day partitions' too (details above)
        entry = classes[data_class.name]
        bound_s = limits.of(data_class.limit)
        sections[data_class.name] = {
            "keys": entry.count, "without_expiry": entry.without_expiry, "latest_expiry": _iso(entry.latest_ms / 1000),
            "must_expire": data_class.expires, "limit_s": bound_s,
        }
    sections["unclassified"] = {"keys": unclassified.count}
    _merge(sections, "status_cache", {"limit": f"{limits.status_ttl_s} s after the last update"})
    kept = f"{AUDIT_RETENTION.days} days (PIPL Art. 56)"
    _merge(sections, "audit", {**await _audit_span(redis), "kept_at_least": kept})
    cutoff_ms = int(now.timestamp() * 1000) - limits.retention_s * 1000
    streams = (("dispatch_intake", keyspace.DISPATCH_INTAKE), ("dead_letters", keyspace.DISPATCH_DEADLETTER))
    for class_name, key in streams:
        _merge(sections, class_name, await _stream_age(redis, key, class_name, cutoff_ms, grace_s, findings))
    return {
        "generated_at": now.isoformat(), "retention_days": retention_days,
        "oldest_retained_day": floor.strftime("%Y%m%d"),
        "scan_log": {"partitions": partitions, "expired_days": expired_days},
        "classes": sections, "violations": findings.items, "violation_counts": findings.counts,
    }


def _merge(sections: dict[str, object], name: str, extra: dict[str, object]) -> None:
    sections[name] = {**cast(dict[str, object], sections[name]), **extra}


async def _partition(redis: Redis, day: str, present: dict[str, tuple[str, int]],
                     retention_days: int) -> dict[str, object]:
    log_key = present.get("scan_log")
    oldest = None
    entries = 0
    if log_key is not None:
        entries = int(await redis.xlen(log_key[0]))
        first = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(log_key[0], count=1))
        if first:
            oldest = datetime.fromtimestamp(int(first[0][1].get(b"t", b"0")) / 1000, UTC).isoformat()
    row: dict[str, object] = {
        "day": day, "entries": entries, "oldest_record": oldest,
        "partition": "present" if log_key else "absent",
        "day_key": "present" if "day_keys" in present else "absent",
        "expires_at": {n: _iso(t / 1000) for n, (_, t) in present.items()},
        "scheduled_expiry": _iso(partition_expiry(day, retention_days)),
    }
    if log_key is not None and "day_keys" not in present:
        row["note"] = "day key gone: these pseudonyms are unlinkable"
    return row


async def _audit_span(redis: Redis) -> dict[str, object]:
    first = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keyspace.AUDIT_STREAM, count=1))
    return {"entries": int(await redis.xlen(keyspace.AUDIT_STREAM)),
            "oldest_record": first[0][1][b"when"].decode() if first else None}


def _id_ms(stream_id: bytes) -> int:
    return int(stream_id.split(b"-")[0])


async def _stream_age(redis: Redis, key: str, class_name: str, cutoff_ms: int, grace_s: float,
                      findings: _Findings) -> dict[str, object]:
    # Both streams are trimmed by the stream id's time (when the entry was added; the server's clock), so that is
    # the age checked: the intake stream's events carry a pseudonym and a sealed holder reference, dead letters too.
    first = cast(Sequence[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(key, count=1))
    if not first:
        return {"entries": 0, "oldest_record": None, "older_than_retention": False}
    oldest_ms = _id_ms(first[0][0])
    old = oldest_ms < cutoff_ms
    if oldest_ms < cutoff_ms - int(grace_s * 1000):
        below = cast(Sequence[object], await redis.xrange(key, max=f"({cutoff_ms}-0", count=_BATCH))
        findings.add(class_name, key, "entries_past_retention",
                     f"{len(below)}{'+' if len(below) == _BATCH else ''} entries older than the retention, "
                     f"the oldest from {_iso(oldest_ms / 1000)}")
    return {"entries": int(await redis.xlen(key)), "oldest_record": _iso(oldest_ms / 1000), "older_than_retention": old}
