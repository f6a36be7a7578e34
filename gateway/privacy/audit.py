"""The audit trail: every read of personal data and every privileged action, hash-chained (PIPL Art. 56).

Entry ``n`` stores ``seq = n``, ``prev`` (entry ``n-1``'s hash, or the genesis / trim base) and
``hash = SHA-256(canonical JSON of seq, prev and every field)``. The hash is computed here in Python (Redis
scripting offers only SHA-1) inside an optimistic transaction: WATCH the head key, read it, MULTI, XADD with an
explicit id, SET the head, EXEC; a concurrent writer from another gateway process makes EXEC fail and this one
retries, so every process still extends one chain. Stream ids are the entry's time in milliseconds (clamped to
stay increasing), so a time-range query is one XRANGE.

An edited entry fails its own hash; a removed one leaves a ``seq`` gap and a broken ``prev`` link; a reordered
pair breaks both; a removed tail disagrees with the head key. Whoever can rewrite Redis can also recompute a
whole chain, so ``placegate audit verify`` prints the head for the privacy officer to keep outside Redis and
accepts it back as ``--anchor`` (a later rewrite of anything at or before the anchor is then detected).

Entries never carry health data (no colour, test, status, holder reference or pseudonym); field names are
checked. The trail has no TTL: it is trimmed only of entries older than three years (``trim_before``).
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from gateway import keyspace
from gateway.errors import StoreUnavailableError
from gateway.principals import Principal
from gateway.redisio import redis_errors

__all__ = [
    "AUDIT_RETENTION",
    "GENESIS",
    "AuditEntry",
    "AuditPage",
    "ChainReport",
    "cli_actor",
    "query_audit",
    "record_access",
    "record_privileged",
    "trim_before",
    "verify_chain",
]

AUDIT_RETENTION = timedelta(days=3 * 366)  # at least 3 years (PIPL Art. 56); trimmed, never expired
GENESIS = "0" * 64
_MAX_ATTEMPTS = 64
_CORE = ("who", "role", "when", "action", "object", "purpose", "case_ref", "result_count")
_CHAIN = ("seq", "prev", "hash")
# Health data never enters the trail (it outlives the scan log by years); these names are refused outright.
_FORBIDDEN = frozenset({"colour", "color", "status", "test", "test_result", "vaccination", "holder", "holder_ref",
                        "pseudonym", "code", "token"})
_MAX_VALUE = 512


@dataclass(frozen=True, slots=True)
class AuditEntry:
    entry_id: str
    seq: int
    prev: str
    hash: str
    fields: Mapping[str, str]

    def to_json(self) -> dict[str, object]:
        return {"id": self.entry_id, "seq": self.seq, "prev": self.prev, "hash": self.hash, **self.fields}


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str | None  # pass back as ``cursor`` to continue; None when the range is exhausted
    scanned: int


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    count: int
    head_seq: int
    head_hash: str
    problems: list[str] = field(default_factory=list)  # "<entry id or key>: <kind>", kinds below

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "count": self.count, "head_seq": self.head_seq, "head_hash": self.head_hash,
                "problems": self.problems}


def cli_actor() -> str:
    """Who runs an admin command: the operating-system account (there is no bearer token on the CLI)."""
    try:
        return "cli:" + getpass.getuser()
    except (OSError, KeyError):
        return f"cli:uid{os.getuid()}"


def _digest(seq: int, prev: str, fields: Mapping[str, str]) -> str:
    canon = orjson.dumps({**fields, "seq": seq, "prev": prev}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canon).hexdigest()


def _next_id(now: datetime, last_id: str) -> str:
    now_ms = int(now.timestamp() * 1000)
    if not last_id:
        return f"{max(now_ms, 1)}-0"
    ms, _, sq = last_id.partition("-")
    return f"{now_ms}-0" if now_ms > int(ms) else f"{ms}-{int(sq) + 1}"


async def _head(redis: Any) -> tuple[int, str, str]:
    """(seq, hash, last stream id) of the chain's newest entry; rebuilt from the stream if the key was lost."""
    raw = await redis.get(keyspace.AUDIT_HEAD)
    if raw:
        seq, digest, last_id = raw.decode().split(" ")
        return int(seq), digest, last_id
    newest = await redis.xrevrange(keyspace.AUDIT_STREAM, count=1)
    if newest:
        eid, f = newest[0]
        return int(f[b"seq"]), f[b"hash"].decode(), eid.decode()
    base = await redis.get(keyspace.AUDIT_BASE)
    if base:
        seq, digest = base.decode().split(" ")[:2]
        return int(seq), digest, ""
    return 0, GENESIS, ""


async def _append(redis: Redis, fields: dict[str, str], now: datetime) -> str:
    for name, value in fields.items():
        if name in _FORBIDDEN or name in _CHAIN:
            raise ValueError(f"audit field {name!r} is not allowed")
        if len(value) > _MAX_VALUE:
            raise ValueError(f"audit field {name!r} is too long")
    with redis_errors("audit trail"):
        for attempt in range(_MAX_ATTEMPTS):
            async with redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(keyspace.AUDIT_HEAD)
                    seq, prev, last_id = await _head(pipe)
                    seq += 1
                    digest = _digest(seq, prev, fields)
                    entry_id = _next_id(now, last_id)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    stored = {"seq": str(seq), "prev": prev, **fields, "hash": digest}
                    pipe.xadd(keyspace.AUDIT_STREAM, stored, id=entry_id)  # type: ignore[arg-type]
                    pipe.set(keyspace.AUDIT_HEAD, f"{seq} {digest} {entry_id}")
                    await pipe.execute()
                    return entry_id
                except WatchError:  # another process extended the chain first: re-read the head and retry
                    await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise StoreUnavailableError("audit trail contended")


async def record_access(
    redis: Redis,
    *,
    principal: Principal,
    action: str,
    obj: str,
    purpose: str,
    now: datetime,
    case_ref: str = "",
    result_count: int = 0,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Append one audit entry for a caller of the API and return its stream id.

    Call it before the data leaves the gateway: if it raises, the read must not happen (no unaudited access).

    :raises StoreUnavailableError: the trail could not be written.
    :raises ValueError: an ``extra`` field is a health-data or chain field name, or a value over 512 chars.
    """
    return await _append(redis, _fields(principal.principal_id, principal.role.value, action, obj, purpose, now,
                                        case_ref, result_count, extra), now)


async def record_privileged(
    redis: Redis,
    *,
    actor: str,
    action: str,
    obj: str,
    now: datetime | None = None,
    role: str = "admin",
    extra: Mapping[str, str] | None = None,
) -> str:
    """Append one privileged action (token issue/revoke, key change, place or rule change): the ONE hook.

    :raises StoreUnavailableError: the change must then not be applied.
    """
    when = now or datetime.now(UTC)
    return await _append(redis, _fields(actor, role, action, obj, "administration", when, "", 0, extra), when)


def _fields(who: str, role: str, action: str, obj: str, purpose: str, now: datetime, case_ref: str,
            result_count: int, extra: Mapping[str, str] | None) -> dict[str, str]:
    core = {"who": who, "role": role, "when": now.astimezone(UTC).isoformat(), "action": action, "object": obj,
            "purpose": purpose, "case_ref": case_ref, "result_count": str(result_count)}
    for name in extra or {}:
        if name in core:
            raise ValueError(f"audit field {name!r} is reserved")
    return {**core, **(extra or {})}


def _entry(eid: bytes, raw: Mapping[bytes, bytes]) -> AuditEntry:
    f = {k.decode(): v.decode() for k, v in raw.items()}
    seq, prev, digest = f.pop("seq", "0"), f.pop("prev", ""), f.pop("hash", "")
    try:
        seq_n = int(seq)
    except ValueError:
        seq_n = -1
    return AuditEntry(eid.decode(), seq_n, prev, digest, f)


_Rows = list[tuple[bytes, dict[bytes, bytes]]]


def _rows(reply: object) -> _Rows:
    """Stream replies as bytes (``connect_redis`` never decodes responses)."""
    return cast(_Rows, reply or [])


def _bytes(reply: object) -> bytes | None:
    return cast(bytes | None, reply)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


async def query_audit(
    redis: Redis,
    *,
    since: datetime,
    until: datetime,
    limit: int,
    principal: str | None = None,
    action: str | None = None,
    cursor: str | None = None,
    scan_max: int = 20_000,
) -> AuditPage:
    """Entries in ``[since, until]`` matching the filters, oldest first; bounds are checked by the caller
    (``policy.purpose.check_audit_query``), and at most ``scan_max`` entries are examined per call."""
    lo = f"({cursor}" if cursor else str(_ms(since))
    hi = str(_ms(until))
    out: list[AuditEntry] = []
    scanned = 0
    last = ""
    with redis_errors("audit trail"):
        while scanned < scan_max:
            batch = _rows(await redis.xrange(keyspace.AUDIT_STREAM, min=lo, max=hi, count=min(500, scan_max - scanned)))
            if not batch:
                return AuditPage(out, None, scanned)
            for eid, raw in batch:
                scanned += 1
                entry = _entry(eid, raw)
                last = entry.entry_id
                if (principal is None or entry.fields.get("who") == principal) and (
                    action is None or entry.fields.get("action") == action
                ):
                    out.append(entry)
                    if len(out) == limit:
                        return AuditPage(out, last, scanned)
            lo = f"({last}"
    return AuditPage(out, last or None, scanned)


async def verify_chain(redis: Redis, *, anchor: tuple[int, str] | None = None, batch: int = 1000) -> ChainReport:
    """Walk the whole trail and report every break: ``edited``, ``broken_link``, ``sequence_gap``,
    ``head_mismatch``, ``anchor_mismatch``."""
    problems: list[str] = []
    with redis_errors("audit trail"):
        base = _bytes(await redis.get(keyspace.AUDIT_BASE))
        seq, prev = (int(base.split()[0]), base.split()[1].decode()) if base else (0, GENESIS)
        head = _bytes(await redis.get(keyspace.AUDIT_HEAD))
        count = 0
        last_id = ""
        anchor_seen = anchor is None or anchor[0] <= seq
        lo = "-"
        while True:
            page = _rows(await redis.xrange(keyspace.AUDIT_STREAM, min=lo, max="+", count=batch))
            if not page:
                break
            for eid, raw in page:
                entry = _entry(eid, raw)
                count += 1
                last_id = entry.entry_id
                if entry.seq != seq + 1:
                    problems.append(f"{entry.entry_id}: sequence_gap")
                if entry.prev != prev:
                    problems.append(f"{entry.entry_id}: broken_link")
                if _digest(entry.seq, entry.prev, entry.fields) != entry.hash:
                    problems.append(f"{entry.entry_id}: edited")
                if anchor is not None and entry.seq == anchor[0]:
                    anchor_seen = True
                    if entry.hash != anchor[1]:
                        problems.append(f"{entry.entry_id}: anchor_mismatch")
                seq, prev = entry.seq, entry.hash
            lo = f"({last_id}"
    expected_head = f"{seq} {prev} {last_id}"
    if (head is not None or count) and (head is None or head.decode() != expected_head):
        problems.append(f"{keyspace.AUDIT_HEAD}: head_mismatch")
    if not anchor_seen:
        problems.append(f"seq {anchor[0] if anchor else 0}: anchor_mismatch")
    return ChainReport(not problems, count, seq, prev, problems)


async def trim_before(redis: Redis, *, cutoff: datetime, now: datetime, actor: str) -> int:
    """Drop entries older than ``cutoff`` (which must itself be at least 3 years back) and keep the chain
    verifiable by recording the last dropped entry as the new base; the trim is itself audited.

    :raises ValueError: a cutoff inside the 3-year retention period.
    """
    if cutoff > now - AUDIT_RETENTION:
        raise ValueError("audit entries are kept at least 3 years (PIPL Art. 56)")
    with redis_errors("audit trail"):
        try:
            async with redis.pipeline(transaction=True) as pipe:
                await pipe.watch(keyspace.AUDIT_HEAD, keyspace.AUDIT_BASE)
                newest_old = _rows(await pipe.xrevrange(keyspace.AUDIT_STREAM, max=f"({_ms(cutoff)}", count=1))
                if not newest_old:
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    return 0
                _, raw = newest_old[0]
                old_base = _bytes(await pipe.get(keyspace.AUDIT_BASE))
                dropped = int(raw[b"seq"]) - (int(old_base.split()[0]) if old_base else 0)
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(keyspace.AUDIT_BASE, f"{int(raw[b'seq'])} {raw[b'hash'].decode()}")
                pipe.xtrim(keyspace.AUDIT_STREAM, minid=str(_ms(cutoff)), approximate=False)
                await pipe.execute()
        except WatchError as exc:  # a write raced the trim: refuse it rather than drop entries the base misses
            raise StoreUnavailableError("audit trail changed during the trim; run it again") from exc
    await record_privileged(redis, actor=actor, action="audit_trim", obj=keyspace.AUDIT_STREAM, now=now,
                            extra={"before": cutoff.isoformat(), "dropped": str(dropped)})
    return dropped
