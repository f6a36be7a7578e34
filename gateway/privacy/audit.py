"""The audit trail: every read of personal data and every privileged action, hash-chained (PIPL Art. 56).

Entry ``n`` stores ``seq = n``, ``prev`` (entry ``n-1``'s hash, or the genesis / checkpoint) and
``hash = SHA-256(canonical JSON of seq, prev and every field)``. The hash is computed here in Python (Redis
scripting offers only SHA-1) inside an optimistic transaction: WATCH the head key, read it, MULTI, XADD with an
explicit id, SET the head, EXEC; a concurrent writer from another gateway process makes EXEC fail and this one
retries, so every process still extends one chain. Stream ids are the entry's time in milliseconds (clamped to
stay increasing), so a time-range query is one XRANGE.

An edited entry fails its own hash; a removed one leaves a ``seq`` gap and a broken ``prev`` link; a reordered
pair breaks both. Whoever can write Redis can recompute SHA-256, so three things are signed with the trail key
(HMAC-SHA256 under ``derive_key(master secret, b"placegate/audit-checkpoint/v1")``, which Redis never holds):

- the **head** (``seq hash last-id mac``), rewritten with every entry: removing entries at the newest end and
  rewriting the head to match needs the secret; a deleted head is noticed by the next writer, which rebuilds it
  from the stream and marks its own entry with ``head_rebuilt`` (a problem ``audit verify`` reports for ever);
- the **checkpoints** (``pg:{audit}:checkpoints``): ``audit trim`` is the only way to remove the oldest entries
  (only those older than 3 years, and only from a trail that verifies); each trim appends a checkpoint
  ``n seq hash time trimmed prev-mac mac`` (chained by the previous checkpoint's MAC) and then an
  ``audit_trim`` entry naming it. The chain's base is the last checkpoint, never an unsigned key: a stream cut
  at the oldest end without a valid checkpoint shows a ``sequence_gap``; a checkpoint written without the
  secret is ``checkpoint_forged``; any value under the old base key is ``forged_base``;
- the **high-water mark** (``pg:audit-hwm``, outside the ``{audit}`` keys): the highest ``seq`` ever written.
  A head replayed from an older copy (``seq`` below the mark) is ``truncated``.

An empty trail is ``ok`` only if it never had entries: with no head and no entry, verify reports
``trail_missing`` when the high-water mark or a checkpoint exists, or when the registry holds any principal,
place or trusted key (each of those writes is audited first, so the trail cannot legitimately be empty then).
``placegate audit verify`` also prints the head for the privacy officer to keep outside Redis and accepts it back
as ``--anchor``: that catches what no key in Redis can, a rollback of the whole store to an older copy.

Entries never carry health data (no colour, test, status, holder reference or pseudonym): field names are
checked here and every value by its kind in ``auditfields.py``. The trail has no TTL.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import hmac
import os
import random
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from crypto.kdf import derive_key
from gateway import keyspace
from gateway.errors import StoreUnavailableError
from gateway.principals import Principal
from gateway.privacy.auditfields import clean_fields
from gateway.redisio import redis_errors, slot_client

__all__ = [
    "AUDIT_RETENTION",
    "GENESIS",
    "AuditEntry",
    "AuditKeyError",
    "AuditPage",
    "ChainReport",
    "TrailBrokenError",
    "cli_actor",
    "query_audit",
    "record_access",
    "record_privileged",
    "record_refusal",
    "set_trail_secret",
    "trim_before",
    "verify_chain",
]

AUDIT_RETENTION = timedelta(days=3 * 366)  # at least 3 years (PIPL Art. 56); trimmed, never expired
GENESIS = "0" * 64
_MAX_ATTEMPTS = 64
_CORE = ("who", "role", "when", "action", "object", "purpose", "case_ref", "result_count")
_CHAIN = ("seq", "prev", "hash", "head_rebuilt")
_KEY_LABEL = b"placegate/audit-checkpoint/v1"
_trail_key: bytes | None = None  # set once per process from the master secret (app start, admin CLI session)


class AuditKeyError(RuntimeError):
    """No trail key: the process never called ``set_trail_secret`` (a programming error)."""


class TrailBrokenError(ValueError):
    """``audit trim`` refused: the trail does not verify, and a checkpoint would sign over the damage."""


def set_trail_secret(master: bytes) -> None:
    """Install the trail key of this process: a sub-key of the master secret, never stored in Redis."""
    global _trail_key
    _trail_key = derive_key(master, _KEY_LABEL)


def _mac(kind: str, text: str) -> str:
    if _trail_key is None:
        raise AuditKeyError("the audit trail key is not set (set_trail_secret)")
    return hmac.new(_trail_key, f"{kind}|{text}".encode(), hashlib.sha256).hexdigest()


def _signed(kind: str, text: str, mac: str) -> bool:
    return hmac.compare_digest(_mac(kind, text), mac)
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


def _head_text(seq: int, digest: str, last_id: str) -> str:
    text = f"{seq} {digest} {last_id}"
    return f"{text} {_mac('head', text)}"


def _parse_head(raw: bytes | None) -> tuple[int, str, str] | None:
    """(seq, hash, last id) of a head value whose MAC holds; None for a missing, malformed or forged one."""
    parts = raw.decode().split(" ") if raw else []
    if len(parts) != 4 or not parts[0].isdigit() or not _signed("head", " ".join(parts[:3]), parts[3]):
        return None
    return int(parts[0]), parts[1], parts[2]


def _checkpoint_text(n: int, seq: int, digest: str, when: str, trimmed: int, prev_mac: str) -> str:
    text = f"{n} {seq} {digest} {when} {trimmed} {prev_mac}"
    return f"{text} {_mac('checkpoint', text)}"


async def _head(redis: Any, store: Any = None) -> tuple[int, str, str, str]:
    """(seq, hash, last stream id, rebuilt) of the chain's newest entry.

    ``rebuilt`` is empty for a head whose MAC holds. A head that is missing or fails its MAC while the trail has
    a past (entries, a checkpoint or a high-water mark) is rebuilt from the stream, and the entry about to be
    written carries ``head_rebuilt`` so the incident stays in the chain: a writer never re-signs a forged head.
    """
    raw = await redis.get(keyspace.AUDIT_HEAD)
    parsed = _parse_head(raw)
    if parsed is not None:
        return (*parsed, "")
    newest = _rows(await redis.xrevrange(keyspace.AUDIT_STREAM, count=1))
    last_cp = _bytes(await redis.lindex(keyspace.AUDIT_CHECKPOINTS, -1))
    # Outside the {audit} tag: read through ``store`` (the cluster client, which routes it), not the watched pipe.
    hwm = _bytes(await (redis if store is None else store).get(keyspace.AUDIT_HWM))
    rebuilt = "forged" if raw else ("missing" if newest or last_cp or hwm else "")
    if newest:
        eid, f = newest[0]
        return int(f[b"seq"]), f[b"hash"].decode(), eid.decode(), rebuilt
    if last_cp:
        parts = last_cp.decode().split(" ")
        return int(parts[1]), parts[2], "", rebuilt
    return 0, GENESIS, "", rebuilt


# Raise the high-water mark only upwards: concurrent writers finish their EXECs in any order.
_HWM_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local s = tonumber(string.match(cur, '^(%d+)'))
  if s and s >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _append_lock() -> asyncio.Lock:
    """The running loop's own lock (a lock is bound to one loop; a test process runs many)."""
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


async def _append(redis: Redis, fields: dict[str, str], now: datetime, *, lenient: bool = False) -> str:
    for name, value in fields.items():
        if name in _FORBIDDEN or name in _CHAIN:
            raise ValueError(f"audit field {name!r} is not allowed")
        if len(value) > _MAX_VALUE:
            raise ValueError(f"audit field {name!r} is too long")
    fields = clean_fields(fields, strict=False if lenient else None)
    _mac("probe", "")  # no key, no entry: fail before touching Redis
    with redis_errors("audit trail"):
        # One hash tag: every audit key in one slot (on a cluster, WATCH/MULTI on that slot's primary). One append
        # at a time per process: appends of one process would only fail each other's WATCH (a burst of 36 reads
        # ran out of attempts on a loaded cluster); other processes still race, and retry.
        async with _append_lock(), slot_client(redis, keyspace.AUDIT_HEAD) as client:
            for attempt in range(_MAX_ATTEMPTS):
                async with client.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(keyspace.AUDIT_HEAD)
                        seq, prev, last_id, rebuilt = await _head(pipe, redis)
                        seq += 1
                        body = {**fields, "head_rebuilt": rebuilt} if rebuilt else fields
                        digest = _digest(seq, prev, body)
                        entry_id = _next_id(now, last_id)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        stored = {"seq": str(seq), "prev": prev, **body, "hash": digest}
                        pipe.xadd(keyspace.AUDIT_STREAM, stored, id=entry_id)  # type: ignore[arg-type]
                        pipe.set(keyspace.AUDIT_HEAD, _head_text(seq, digest, entry_id))
                        await pipe.execute()
                        break
                    except WatchError:  # another process extended the chain first: re-read the head and retry
                        await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
            else:
                raise StoreUnavailableError("audit trail contended")
            await redis.eval(_HWM_LUA, 1, keyspace.AUDIT_HWM, str(seq), f"{seq} {_mac('hwm', str(seq))}")
    return entry_id


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


async def record_refusal(
    redis: Redis,
    *,
    principal: Principal,
    action: str,
    obj: str,
    purpose: str,
    code: str,
    now: datetime,
    case_ref: str = "",
    extra: Mapping[str, str] | None = None,
) -> bool:
    """Append one refusal (``outcome`` = the refusal's error code); False if the trail could not be written.

    A refusal stands whether or not its entry is written, so the store being down never turns it into an
    answer; values that do not fit their kind are dropped as in every entry (a refused request is the likeliest
    to carry a raw holder reference where a case id belongs).
    """
    fields = _fields(principal.principal_id, principal.role.value, action, obj, purpose, now, case_ref, 0,
                     {**(extra or {}), "outcome": code})
    try:
        await _append(redis, fields, now, lenient=True)
    except StoreUnavailableError:
        return False
    return True


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


def _problem_checkpoints(raw: list[bytes], problems: list[str]) -> tuple[int, str]:
    """Check the checkpoint chain and return the trail's base: (seq, hash) of the last checkpoint."""
    seq, digest, prev_mac = 0, GENESIS, ""
    for i, item in enumerate(raw, start=1):
        parts = item.decode(errors="replace").split(" ")
        ok = len(parts) == 7 and all(p.lstrip("-").isdigit() for p in (parts[0], parts[1], parts[4]))
        if not ok or not _signed("checkpoint", " ".join(parts[:6]), parts[6]):
            problems.append(f"{keyspace.AUDIT_CHECKPOINTS}[{i}]: checkpoint_forged")
            continue
        if int(parts[0]) != i or parts[5] != prev_mac or int(parts[1]) < seq:
            problems.append(f"{keyspace.AUDIT_CHECKPOINTS}[{i}]: checkpoint_broken")
        seq, digest, prev_mac = int(parts[1]), parts[2], parts[6]
    return seq, digest


async def _registry_in_use(redis: Redis) -> bool:
    """Whether anything exists whose writing is audited first (principals, places, trusted keys)."""
    return bool(await redis.exists(keyspace.PRINCIPAL_IDS, keyspace.PLACES, keyspace.TRUST, keyspace.DSC_TRUST))


async def verify_chain(redis: Redis, *, anchor: tuple[int, str] | None = None, batch: int = 1000) -> ChainReport:
    """Walk the whole trail and report every break: ``edited``, ``broken_link``, ``sequence_gap``,
    ``head_mismatch``, ``head_forged``, ``head_rebuilt``, ``truncated``, ``high_water_forged``,
    ``checkpoint_forged``, ``checkpoint_broken``, ``forged_base``, ``trail_missing``, ``anchor_mismatch``.

    :raises AuditKeyError: the process has no trail key (the MACs cannot be checked).
    """
    problems: list[str] = []
    _mac("probe", "")
    with redis_errors("audit trail"):
        checkpoints = cast(list[bytes], await redis.lrange(keyspace.AUDIT_CHECKPOINTS, 0, -1))
        seq, prev = _problem_checkpoints(checkpoints, problems)
        if await redis.exists(keyspace.AUDIT_BASE):  # trims write signed checkpoints only
            problems.append(f"{keyspace.AUDIT_BASE}: forged_base")
        head = _bytes(await redis.get(keyspace.AUDIT_HEAD))
        hwm = _bytes(await redis.get(keyspace.AUDIT_HWM))
        count = 0
        last_id = ""
        anchor_seen = anchor is None or anchor[0] <= seq
        if anchor is not None and anchor[0] == seq and seq and anchor[1] != prev:
            problems.append(f"seq {seq}: anchor_mismatch")
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
                if "head_rebuilt" in entry.fields:
                    problems.append(f"{entry.entry_id}: head_rebuilt")
                if anchor is not None and entry.seq == anchor[0]:
                    anchor_seen = True
                    if entry.hash != anchor[1]:
                        problems.append(f"{entry.entry_id}: anchor_mismatch")
                seq, prev = entry.seq, entry.hash
            lo = f"({last_id}"
        registry_in_use = not count and head is None and await _registry_in_use(redis)
    if head is not None or count:
        parsed = _parse_head(head)
        if head is not None and parsed is None:
            problems.append(f"{keyspace.AUDIT_HEAD}: head_forged")
        elif parsed != (seq, prev, last_id):
            problems.append(f"{keyspace.AUDIT_HEAD}: head_mismatch")
    high = _hwm_seq(hwm, problems)
    if high > seq:
        problems.append(f"{keyspace.AUDIT_HWM}: truncated")
    if not count and head is None and (checkpoints or hwm is not None or registry_in_use):
        problems.append(f"{keyspace.AUDIT_STREAM}: trail_missing")
    if not anchor_seen:
        problems.append(f"seq {anchor[0] if anchor else 0}: anchor_mismatch")
    return ChainReport(not problems, count, seq, prev, problems)


def _hwm_seq(raw: bytes | None, problems: list[str]) -> int:
    if raw is None:
        return 0
    parts = raw.decode(errors="replace").split(" ")
    if len(parts) != 2 or not parts[0].isdigit() or not _signed("hwm", parts[0], parts[1]):
        problems.append(f"{keyspace.AUDIT_HWM}: high_water_forged")
        return 0
    return int(parts[0])


async def trim_before(redis: Redis, *, cutoff: datetime, now: datetime, actor: str) -> int:
    """Drop entries older than ``cutoff`` (which must itself be at least 3 years back), leaving a signed
    checkpoint of the last dropped entry as the chain's new base; the trim is itself audited.

    :raises ValueError: a cutoff inside the 3-year retention period.
    :raises TrailBrokenError: the trail does not verify (a checkpoint must never sign over a cut).
    """
    if cutoff > now - AUDIT_RETENTION:
        raise ValueError("audit entries are kept at least 3 years (PIPL Art. 56)")
    report = await verify_chain(redis)
    if not report.ok:
        raise TrailBrokenError("the audit trail does not verify; nothing trimmed: " + "; ".join(report.problems[:5]))
    with redis_errors("audit trail"):
        try:
            async with slot_client(redis, keyspace.AUDIT_HEAD) as client, client.pipeline(transaction=True) as pipe:
                await pipe.watch(keyspace.AUDIT_HEAD, keyspace.AUDIT_CHECKPOINTS)
                newest_old = _rows(await pipe.xrevrange(keyspace.AUDIT_STREAM, max=f"({_ms(cutoff)}", count=1))
                if not newest_old:
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    return 0
                _, raw = newest_old[0]
                last_cp = _bytes(await pipe.lindex(keyspace.AUDIT_CHECKPOINTS, -1))
                n, old_seq, prev_mac = 1, 0, ""
                if last_cp:
                    parts = last_cp.decode().split(" ")
                    n, old_seq, prev_mac = int(parts[0]) + 1, int(parts[1]), parts[6]
                seq = int(raw[b"seq"])
                dropped = seq - old_seq
                checkpoint = _checkpoint_text(n, seq, raw[b"hash"].decode(), now.astimezone(UTC).isoformat(),
                                              dropped, prev_mac)
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.rpush(keyspace.AUDIT_CHECKPOINTS, checkpoint)
                pipe.xtrim(keyspace.AUDIT_STREAM, minid=str(_ms(cutoff)), approximate=False)
                await pipe.execute()
        except WatchError as exc:  # a write raced the trim: refuse it rather than drop entries the base misses
            raise StoreUnavailableError("audit trail changed during the trim; run it again") from exc
    await record_privileged(redis, actor=actor, action="audit_trim", obj=f"checkpoint:{n}", now=now,
                            extra={"before": cutoff.isoformat(), "dropped": str(dropped),
                                   "checkpoint_seq": str(seq)})
    return dropped
