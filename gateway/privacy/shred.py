"""`placegate privacy shred --day YYYYMMDD`: crypto-shred one day now, not at the end of its retention.

The day's pseudonym key and its log partition are deleted together (one transaction: they share the day's hash
tag), then the store is compacted (gateway/privacy/compaction.py) so that neither stays in the AOF or an RDB
snapshot. A scan of that day arriving later gets a new random key (gateway/scan/store.py), which links nothing to
the records shredded.

A loop turn that read the old key just before the deletion may still append its records after it (its lookup and
its record are two pipelined groups). So after ``grace_s`` the records the partition got within that time are
removed as well (``XTRIM MINID``, by the server's own clock); the price is that scans of that day arriving in those
few seconds lose their log records too. Audited before anything is deleted (``record_privileged``).
"""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from redis.asyncio import Redis

from gateway import keyspace
from gateway.cli_common import add_common_args, admin_redis, run, settings_from
from gateway.privacy.audit import cli_actor, record_privileged
from gateway.privacy.compaction import Compaction, compact_store
from gateway.redisio import redis_errors, slot_client

__all__ = ["ShredReport", "add_shred", "parse_day", "shred_day"]

_DAY = re.compile(r"\d{8}")
# Longer than a loop turn's gap between its lookup group (which read the key) and its record group, with margin
# for a gateway under load; scans of the day arriving within it lose their records.
GRACE_S = 2.0


def parse_day(raw: str) -> str:
    """A UTC day as YYYYMMDD.

    :raises ValueError: anything else (a real calendar day is required).
    """
    if not _DAY.fullmatch(raw):
        raise ValueError(f"--day must be YYYYMMDD, not {raw!r}")
    datetime.strptime(raw, "%Y%m%d")  # raises ValueError for 20261399
    return raw


@dataclass(frozen=True, slots=True)
class ShredReport:
    """What a shred removed: the day key (whether it was there), the log records, the records appended by turns
    in flight, and the compaction."""

    day: str
    day_key_present: bool
    log_records: int
    late_records: int
    compaction: Compaction

    def to_json(self) -> dict[str, object]:
        return {
            "day": self.day, "day_key": "present" if self.day_key_present else "absent",
            "log_records": self.log_records, "late_records": self.late_records,
            "compaction": {"done": True, **self.compaction.to_json()},
        }


async def shred_day(
    redis: Redis, day: str, *, actor: str, role: str = "admin", now: datetime | None = None, grace_s: float = GRACE_S
) -> ShredReport:
    """Delete ``day``'s key and log partition now, then compact the store and wait for it.

    :raises ValueError: ``day`` is not YYYYMMDD.
    :raises StoreUnavailableError: Redis did not answer or the compaction failed (nothing is undone: run again).
    """
    day = parse_day(day)
    key, log_key = keyspace.day_key(day), keyspace.scan_log_key(day)
    await record_privileged(redis, actor=actor, role=role, action="shred_day", obj=f"day:{day}", now=now)
    with redis_errors("shred"):
        # One hash tag: the day's key and log share a slot (on a cluster, a MULTI on that slot's primary).
        async with slot_client(redis, key) as client, client.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.xlen(log_key)
            pipe.delete(key)
            pipe.delete(log_key)
            (seconds, micros), records, key_present, _ = await pipe.execute()
    cutoff_ms = int(seconds) * 1000 + int(micros) // 1000 + int(grace_s * 1000)
    await asyncio.sleep(grace_s)
    with redis_errors("shred"):
        late = await redis.xtrim(log_key, minid=f"{cutoff_ms}-0", approximate=False)
    compaction = await compact_store(redis)
    return ShredReport(day, bool(key_present), int(records), int(late), compaction)


def _day_arg(raw: str) -> str:
    try:
        return parse_day(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_shred(psub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``shred`` to ``placegate privacy``."""
    shred = psub.add_parser("shred", help="delete one day's pseudonym key and log now, and compact the store")
    shred.add_argument("--day", required=True, type=_day_arg, help="the UTC day, YYYYMMDD")
    add_common_args(shred)
    shred.set_defaults(func=_shred)


def _shred(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            report = await shred_day(redis, args.day, actor=cli_actor(), now=datetime.now(UTC))
        print(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
        return 0

    return run(go())
