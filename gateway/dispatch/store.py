"""Case persistence: one case = a hash, a history stream and (for scan events) a sealed holder reference, all
under the case's hash tag, written by one server-side script and acknowledged only once on disk.

Writes are optimistic: the script appends the new history entries and rewrites the hash only while the stored
history still has the length the writer read (``docs/dispatch.md``, storage format), so two concurrent
transitions never lose one another; the loser re-reads and re-applies. Indexes (the open set and the per-day
sets, the sweeper's due index) live in other slots and are written after the case on the same connection: they
are hints, repaired by the next write or sweep, and every reader checks the case itself.

The due index (``keyspace.DISPATCH_DUE``) scores every open case by ``policy.deadlines.next_due_at``. Two rules
keep it from ever hiding a due case: before the case script, the write lowers the case's score to the new
instant if that is earlier (``ZADD LT``, pipelined with the script: a crash after the script leaves a score that
is early, never late, and an early score costs the sweeper one read); after it, a script sets the exact score
only if it was computed from a history at least as long as the one the index last saw (the stamps hash), so of
two writes whose index updates arrive out of order the newer wins.

Durability (docs/dispatch-operations.md "Durability"): when the server runs with AOF (``CONFIG GET
appendonly`` says yes, as the embedded server does) every write ends with ``WAITAOF 1 0 timeout`` on the same
connection; fewer than one local fsync in time raises ``NotDurableError`` and the caller must not acknowledge.
With AOF off (the test server) there is nothing to wait for and the wait is skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from crypto.sealing import SEALED_PREFIX, Sealer, SealError, note_binding
from gateway import keyspace
from gateway.dispatch.folding import FOLD_MAX_OCCURRENCES, OCCUR_LUA, ROLL_LUA, WRITE_RETRIES, CaseFolding, Occurrences
from gateway.dispatch.notes import EXTENSION_FIELD, join_entries, note_days, note_ttl_ms, refs_of, split_entries
from gateway.errors import CaseRefusedError, NotDurableError, NotFoundError
from gateway.redisio import Command, is_cluster, one_connection, redis_errors, slot_client
from gateway.scan.scanlog import day_of
from policy.casework import TERMINAL_STATES, Case, case_from_fields, case_to_fields
from policy.deadlines import next_due_at
from policy.masking import mask_personal

__all__ = [
    "FOLD_MAX_OCCURRENCES", "WRITE_RETRIES", "CaseStore", "Occurrences", "case_id_for_event", "due_score",
    "valid_case_id",
]  # fmt: skip

# KEYS: case hash, history stream, holder hash, then the notes hashes of the new entries' days. ARGV: expected
# history length, case TTL ms, JSON case fields (flat [k, v, ...]), JSON list of new entries (each flat), JSON
# holder fields or "", holder TTL ms, JSON list of notes [KEYS index, field, text, TTL ms] (dispatch/notes.py).
_WRITE_LUA = """
if redis.call('XLEN', KEYS[2]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[3])))
for _, entry in ipairs(cjson.decode(ARGV[4])) do
  redis.call('XADD', KEYS[2], '*', unpack(entry))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[3], unpack(cjson.decode(ARGV[5])))
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
end
for _, n in ipairs(cjson.decode(ARGV[7] or '[]')) do
  redis.call('HSET', KEYS[n[1]], n[2], n[3])
  redis.call('PEXPIRE', KEYS[n[1]], n[4])
end
return 1
"""

# KEYS: due index, its stamps. ARGV: TTL ms, then per case: id, history length, score ("" = remove). A score is
# written only from a history at least as long as the one it last came from (stale writes lose). Returns how many
# entries it changed.
_INDEX_LUA = """
local changed = 0
for i = 2, #ARGV, 3 do
  local cid, len, score = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local seen = tonumber(redis.call('HGET', KEYS[2], cid) or '-1')
  if seen <= len then
    if score == '' then
      redis.call('ZREM', KEYS[1], cid)
      redis.call('HDEL', KEYS[2], cid)
    else
      redis.call('ZADD', KEYS[1], score, cid)
      redis.call('HSET', KEYS[2], cid, len)
    end
    changed = changed + 1
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return changed
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def due_score(case: Case) -> str | None:
    """The case's score in the due index: Unix ms of ``next_due_at`` rounded up (so a case is never read before
    its instant), ``"+inf"`` for an open case whose sweep answer never changes, ``None`` for a closed case."""
    if case.state in TERMINAL_STATES:
        return None
    due = next_due_at(case)
    return "+inf" if due is None else str(-((_EPOCH - due) // _MS))


def case_id_for_event(event_id: str) -> str:
    """The case id of an intake event: derived, so a redelivered event finds the case it already made."""
    return "c" + hashlib.sha256(b"placegate/case/" + event_id.encode()).hexdigest()[:20]


def valid_case_id(case_id: str) -> bool:
    return len(case_id) == 21 and case_id[0] == "c" and all(c in "0123456789abcdef" for c in case_id[1:])


def _flat(fields: Mapping[str, str]) -> list[str]:
    return [x for kv in fields.items() for x in kv]


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _text(raw: Mapping[bytes, bytes] | Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def _day(at: datetime) -> str:
    return at.strftime("%Y%m%d")


class CaseStore(CaseFolding):
    """Reads and durable writes of cases; every redis exception becomes ``StoreUnavailableError``."""

    def __init__(
        self,
        redis: Redis,
        *,
        waitaof_timeout_ms: int = 2000,
        case_retention_s: int = keyspace.CASE_RETENTION_S,
        holder_retention_s: int = 21 * 24 * 3600,
        note_retention_days: int = 21,
        note_sealer: Sealer | None = None,
    ) -> None:
        self.redis = redis
        self.waitaof_timeout_ms = waitaof_timeout_ms
        self.case_retention_ms = case_retention_s * 1000
        self.holder_retention_ms = holder_retention_s * 1000
        self.note_retention_days = note_retention_days  # note texts keep the scan log's retention (notes.py)
        # Note texts are free text: masking catches ID numbers, phones and e-mails, not a name. Sealed at rest
        # (AES-GCM bound to case, day and field), a name is readable only through a case read, which is audited;
        # no Redis value, AOF or backup shows it. None: stored masked but clear (tools that never read notes).
        self.note_sealer = note_sealer
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # the runtime's clock: note TTLs from "now"
        self._script = redis.register_script(_WRITE_LUA)
        self._index_script = redis.register_script(_INDEX_LUA)
        self._occur_script = redis.register_script(OCCUR_LUA)
        self._roll_script = redis.register_script(ROLL_LUA)
        self._folds: dict[str, tuple[str, float]] = {}  # fold key -> (case id, monotonic expiry): fold_many
        self._aof: bool | None = None
        # Runs before every case write with its (old, new) pairs: the webhook outbox stages there, so a crash
        # after the write never loses a notification (gateway/dispatch/webhooks.py). None: nobody is notified.
        self.before_write: Callable[[Sequence[tuple[Case | None, Case]]], Awaitable[None]] | None = None
        self._scripts_loaded = False

    async def aof_enabled(self) -> bool:
        """Whether the server persists to an AOF (checked once; a server that hides CONFIG is assumed to)."""
        if self._aof is None:
            with redis_errors("dispatch store"):
                try:
                    reply = await self.redis.config_get("appendonly")
                except ResponseError:  # an error reply, not an outage: CONFIG is renamed or denied
                    self._aof = True
                else:
                    value = reply.get("appendonly", reply.get(b"appendonly", b""))  # type: ignore[call-overload]
                    self._aof = (value.decode() if isinstance(value, bytes) else str(value)) == "yes"
        return self._aof

    # --- writes --------------------------------------------------------------------------------------------
    async def write(self, old: Case | None, new: Case, *, holder: Mapping[str, str] | None = None) -> bool:
        """Store ``new`` if the stored history still has ``len(old.history)`` entries (0 for a new case).

        :returns: False when another writer got there first (nothing written; re-read and re-apply).
        :raises NotDurableError: written but not confirmed on disk in time: do not acknowledge.
        """
        args = self._write_args(old, new, holder)
        if self.before_write is not None:
            await self.before_write([(old, new)])
        durable = await self.aof_enabled()
        cid, score = new.case_id, due_score(new)
        if is_cluster(self.redis):
            return await self._write_cluster(old, new, args, durable)
        with redis_errors("dispatch store"):
            # One connection for the script, the index updates and WAITAOF: WAITAOF counts this client's writes.
            async with one_connection(self.redis) as conn:
                # Never a pipeline here: redis-py runs a pipeline on another connection of the pool, where this
                # connection's WAITAOF would not count its writes (and the pool could run dry under load).
                if score is not None:
                    await conn.zadd(keyspace.DISPATCH_DUE, {cid: score}, lt=True)  # early, never late: see above
                ok = await self._script(
                    keys=self._keys(old, new),
                    args=args,
                    client=conn,
                )
                if ok:
                    await self._index(conn, new, created=old is None)
                if durable:
                    await self._wait_aof(conn)
        return bool(ok)

    def _keys(self, old: Case | None, new: Case) -> list[str]:
        cid, days = new.case_id, note_days(new.history[len(old.history) if old is not None else 0 :])
        base = [keyspace.case_key(cid), keyspace.case_history_key(cid), keyspace.case_holder_key(cid)]
        return base + [keyspace.case_notes_key(cid, d) for d in days]

    async def _write_cluster(self, old: Case | None, new: Case, args: list[str], durable: bool) -> bool:
        """``write`` on a Redis Cluster: the same order (due score lowered first, then the case, then the
        indexes), with the case script and WAITAOF on one connection of the case's node (its slot's primary)."""
        cid, score = new.case_id, due_score(new)
        keys = self._keys(old, new)
        with redis_errors("dispatch store"):
            if score is not None:
                await self.redis.zadd(keyspace.DISPATCH_DUE, {cid: score}, lt=True)
            await self._load_scripts()
            ok, _ = await self._on_node(keys[0], [("EVALSHA", self._script.sha, len(keys), *keys, *args)], durable)
            if ok:
                await self._index(self.redis, new, created=old is None)
        return bool(ok)

    async def _load_scripts(self) -> None:
        """Load both scripts on every primary (a cluster pipeline does not load a script it lacks)."""
        if not self._scripts_loaded:
            for script in (self._script, self._index_script):
                await self.redis.script_load(script.script)
            self._scripts_loaded = True

    async def _on_node(self, key: str, commands: Sequence[Command], durable: bool) -> tuple[Any, bool]:
        """Cluster: ``commands`` (all in ``key``'s slot) and, when ``durable``, WAITAOF, sent together to the
        node serving ``key`` on one of its connections, so WAITAOF counts those writes.

        :returns: the first command's reply and whether the wait was done.
        :raises NotDurableError: fewer than one local fsync in time.
        """
        cluster = cast(RedisCluster, self.redis)
        pipe = cluster.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        if durable:
            pipe.execute_command("WAITAOF", 1, 0, self.waitaof_timeout_ms, target_nodes=cluster.get_node_from_key(key))
        try:
            replies = await pipe.execute()
        except NoScriptError:  # a promoted replica without the script: load it everywhere and try once more
            self._scripts_loaded = False
            await self._load_scripts()
            return await self._on_node(key, commands, durable)
        if durable and int(replies[-1][0]) < 1:
            raise NotDurableError("the write was not confirmed on disk in time")
        return replies[0], durable

    def _write_args(self, old: Case | None, new: Case, holder: Mapping[str, str] | None) -> list[str]:
        done = len(old.history) if old is not None else 0
        entries, notes = split_entries(new.history[done:], done, self.note_retention_days, self.clock())
        days = note_days(new.history[done:])
        return [
            str(done),
            str(self.case_retention_ms),
            orjson.dumps(_flat(case_to_fields(new))).decode(),
            orjson.dumps([_flat(e) for e in entries]).decode(),
            orjson.dumps(_flat(holder)).decode() if holder else "",
            str(self.holder_retention_ms),
            orjson.dumps([[4 + days.index(n.day), n.field, self._seal_note(new.case_id, n.day, n.field, n.text),
                          str(n.ttl_ms)] for n in notes]).decode(),
        ]

    async def write_unacknowledged(self, changes: Sequence[tuple[Case | None, Case]]) -> list[bool]:
        """``write`` for many cases in two round trips, **without** waiting for the disk: for writes nobody is
        told about (the sweeper's flags and escalations: one lost in a crash is found again by the next pass).

        :returns: per change, whether it was written (False: changed since it was read; re-read and re-apply).
        """
        if not changes:
            return []
        if self.before_write is not None:
            await self.before_write(changes)
        with redis_errors("dispatch store"):
            if is_cluster(self.redis):
                await self._load_scripts()
            scores = [due_score(new) for _, new in changes]
            async with self.redis.pipeline(transaction=False) as pipe:
                for (old, new), score in zip(changes, scores, strict=True):
                    cid = new.case_id
                    if score is not None:
                        pipe.zadd(keyspace.DISPATCH_DUE, {cid: score}, lt=True)
                    await self._queue(
                        pipe, self._script,
                        self._keys(old, new),
                        self._write_args(old, new, None),
                    )  # fmt: skip
                replies = await pipe.execute()
            written: list[bool] = []
            at = 0
            for score in scores:
                at += 2 if score is not None else 1
                written.append(bool(replies[at - 1]))
            done = [(old, new) for (old, new), ok in zip(changes, written, strict=True) if ok]
            if done:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for old, new in done:
                        if new.state in TERMINAL_STATES:
                            pipe.srem(keyspace.DISPATCH_OPEN, new.case_id)
                        else:
                            pipe.sadd(keyspace.DISPATCH_OPEN, new.case_id)
                        if old is None:
                            day = keyspace.dispatch_day_key(_day(new.created_at))
                            pipe.sadd(day, new.case_id)
                            pipe.pexpire(day, self.case_retention_ms)
                    pipe.pexpire(keyspace.DISPATCH_OPEN, self.case_retention_ms)
                    await self._file(pipe, [new for _, new in done])
                    await pipe.execute()
        return written

    async def _index(self, conn: Redis, case: Case, *, created: bool) -> None:
        if case.state in TERMINAL_STATES:
            await conn.srem(keyspace.DISPATCH_OPEN, case.case_id)
        else:
            await conn.sadd(keyspace.DISPATCH_OPEN, case.case_id)
            await conn.pexpire(keyspace.DISPATCH_OPEN, self.case_retention_ms)
        if created:
            day = keyspace.dispatch_day_key(_day(case.created_at))
            await conn.sadd(day, case.case_id)
            await conn.pexpire(day, self.case_retention_ms)
        await self._file(conn, [case])

    async def _file(self, client: Redis | Pipeline, cases: Sequence[Case]) -> None:
        args: list[str] = [str(self.case_retention_ms)]
        for case in cases:
            args += [case.case_id, str(len(case.history)), due_score(case) or ""]
        # On a pipeline, awaiting only queues the call (and its SCRIPT LOAD if the server lacks it).
        await self._queue(client, self._index_script, [keyspace.DISPATCH_DUE, keyspace.DISPATCH_DUE_STAMPS], args)

    async def _queue(self, client: Redis | Pipeline, script: AsyncScript, keys: list[str], args: list[str]) -> Any:
        """Run ``script`` (queue it, on a pipeline). A cluster pipeline refuses ``evalsha`` itself and loads no
        script: the scripts are loaded on every primary first and the call queued as a plain EVALSHA."""
        if is_cluster(self.redis) and client is not self.redis:
            await self._load_scripts()
            return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return await script(keys=keys, args=args, client=client)

    async def _wait_aof(self, conn: Redis) -> None:
        local, _ = await conn.execute_command("WAITAOF", 1, 0, self.waitaof_timeout_ms)  # type: ignore[no-untyped-call]
        if int(local) < 1:
            raise NotDurableError("the write was not confirmed on disk in time")

    async def ensure_durable(self, case: Case) -> None:
        """Re-index an existing case and wait for the disk (a redelivered event whose case already exists)."""
        with redis_errors("dispatch store"):
            if is_cluster(self.redis):
                await self._index(self.redis, case, created=True)
                # The AOF is written in order: a later write to the case's node on disk means the case is too.
                name = keyspace.case_key(case.case_id)
                await self._on_node(name, [("PEXPIRE", name, self.case_retention_ms)], await self.aof_enabled())
                return
            async with one_connection(self.redis) as conn:
                await self._index(conn, case, created=True)
                if await self.aof_enabled():
                    await self._wait_aof(conn)

    async def update(self, case_id: str, change: Callable[[Case], Case]) -> Case:
        """Read, apply ``change`` (which may raise to refuse), write; retried on a concurrent write.

        :raises NotFoundError: no such case. :raises CaseRefusedError: ``case_conflict`` after the retries.
        """
        for _ in range(WRITE_RETRIES):
            case = await self.get(case_id)
            if case is None:
                raise NotFoundError("no such case")
            new = change(case)
            if new is case:
                return case
            if await self.write(case, new):
                return new
        raise CaseRefusedError("the case kept changing; try again", code="case_conflict")

    # --- reads ---------------------------------------------------------------------------------------------
    async def get(self, case_id: str, *, history: bool = True) -> Case | None:
        """The case with its full history (``history=False``: the hash only, for queue listings)."""
        # One MULTI on the case's slot (on a cluster, on its primary's own connection: redis-py's cluster MULTI
        # resolves slots in a thread with a loop of its own).
        with redis_errors("dispatch store"):
            async with slot_client(self.redis, keyspace.case_key(case_id)) as client:
                pipe = client.pipeline(transaction=True)
                pipe.hgetall(keyspace.case_key(case_id))
                if history:
                    pipe.xrange(keyspace.case_history_key(case_id))
                replies = await pipe.execute()
        if not replies[0]:
            return await self._aliased(case_id, history)
        raw = [_text(f) for _, f in replies[1]] if history else []
        return case_from_fields(_text(replies[0]), join_entries(raw, await self._note_texts(case_id, refs_of(raw))))

    async def _aliased(self, case_id: str, history: bool) -> Case | None:
        """The case a report's announced id was folded into (one hop: an alias never names another alias)."""
        with redis_errors("dispatch store"):
            target = await self.redis.get(keyspace.case_alias_key(case_id))
        if target is None or _s(target) == case_id:
            return None
        with redis_errors("dispatch store"):
            if not await self.redis.exists(keyspace.case_key(_s(target))):
                return None
        return await self.get(_s(target), history=history)

    async def _note_texts(self, case_id: str, days: Sequence[str]) -> dict[str, dict[str, str]]:
        """The note texts of the case on ``days`` (a day whose key expired reads as empty)."""
        if not days:
            return {}
        with redis_errors("dispatch store"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.hgetall(keyspace.case_notes_key(case_id, day))
                replies = await pipe.execute()
        return {
            day: {f: self._open_note(case_id, day, f, text) for f, text in _text(r).items()}
            for day, r in zip(days, replies, strict=True)
        }

    def seal_intake_note(self, event_id: str, text: str) -> str:
        """A report's note as its intake event (and any dead letter of it) carries it: sealed to the event."""
        if self.note_sealer is None:
            return text
        return self.note_sealer.seal(text, bound_to=f"event:{event_id}:note")

    def open_intake_note(self, event_id: str, stored: str | None) -> str | None:
        """The note of an intake event for its case: opened, or as written by code from before the sealing.

        A sealed note that does not open here (another event's, another secret's) becomes no note: the case is
        still made, and a note nobody can read must not stop it."""
        if not stored or self.note_sealer is None or not stored.startswith(SEALED_PREFIX):
            return stored or None
        try:
            return self.note_sealer.open(stored, bound_to=f"event:{event_id}:note")
        except SealError:
            return None

    def _seal_note(self, case_id: str, day: str, field: str, text: str) -> str:
        if self.note_sealer is None:
            return text
        return self.note_sealer.seal(text, bound_to=note_binding(case_id, day, field))

    def _open_note(self, case_id: str, day: str, field: str, stored: str) -> str:
        """The note's text; "" (read as expired) for one that does not open here: copied from another case or
        field, or written under another secret.
        A clear text from before the sealing is returned as stored (it was masked when written)."""
        if self.note_sealer is None or not stored.startswith(SEALED_PREFIX):
            return stored
        try:
            return self.note_sealer.open(stored, bound_to=note_binding(case_id, day, field))
        except SealError:
            return ""

    async def get_many(self, case_ids: Sequence[str], *, history: bool = False) -> list[Case]:
        """The cases that exist among ``case_ids``, in order."""
        with redis_errors("dispatch store"):
            pipe = self.redis.pipeline(transaction=False)
            for cid in case_ids:
                pipe.hgetall(keyspace.case_key(cid))
                if history:
                    pipe.xrange(keyspace.case_history_key(cid))
            replies = await pipe.execute()
        step = 2 if history else 1
        out: list[Case] = []
        for i in range(0, len(replies), step):
            if replies[i]:
                # Listings and evaluation read no note text (``join_entries`` with ``None``).
                entries = join_entries([_text(f) for _, f in replies[i + 1]], None) if history else []
                out.append(case_from_fields(_text(replies[i]), entries))
        return out

    async def holder(self, case_id: str) -> dict[str, str] | None:
        """The stored (still sealed) holder fields of a case, ``None`` when it has none."""
        with redis_errors("dispatch store"):
            raw = await self.redis.hgetall(keyspace.case_holder_key(case_id))
        return _text(raw) or None

    async def scan_open(self, cursor: int, count: int) -> tuple[int, list[str]]:
        """One SSCAN step over the open cases: the next cursor (0 at the end) and some ids."""
        with redis_errors("dispatch store"):
            nxt, ids = await self.redis.sscan(keyspace.DISPATCH_OPEN, cursor=cursor, count=count)
        return int(nxt), sorted(_s(i) for i in ids)

    async def drop_open(self, case_id: str) -> None:
        with redis_errors("dispatch store"):
            await self.redis.srem(keyspace.DISPATCH_OPEN, case_id)

    # --- the due index (the sweeper) ----------------------------------------------------------------------
    async def due(self, now: datetime, *, offset: int = 0, count: int = 200) -> list[str]:
        """Ids of open cases whose due instant is at or before ``now``, earliest first."""
        with redis_errors("dispatch store"):
            ids: list[bytes] = await self.redis.zrangebyscore(  # type: ignore[assignment]
                keyspace.DISPATCH_DUE, "-inf", (now - _EPOCH) // _MS, start=offset, num=count
            )
        return [_s(i) for i in ids]

    async def file_due(self, cases: Sequence[Case]) -> None:
        """File ``cases`` in the due index as read (a stale copy loses to a newer write); closed ones leave it
        and the open set."""
        if not cases:
            return
        with redis_errors("dispatch store"):
            async with self.redis.pipeline(transaction=False) as pipe:
                await self._file(pipe, cases)
                closed = [c.case_id for c in cases if c.state in TERMINAL_STATES]
                if closed:
                    pipe.srem(keyspace.DISPATCH_OPEN, *closed)
                await pipe.execute()

    async def drop_due(self, case_ids: Sequence[str]) -> None:
        """Forget ids whose case is gone (past the case retention) from the due index and the open set."""
        if not case_ids:
            return
        with redis_errors("dispatch store"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keyspace.DISPATCH_DUE, *case_ids)
                pipe.hdel(keyspace.DISPATCH_DUE_STAMPS, *case_ids)
                pipe.srem(keyspace.DISPATCH_OPEN, *case_ids)
                await pipe.execute()

    async def due_check_needed(self) -> bool:
        """Whether the open set must be checked against the due index: never checked in the last
        ``DUE_RECONCILE_S``, or open cases but no index at all (deleted, or written by code without one)."""
        with redis_errors("dispatch store"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(keyspace.DISPATCH_DUE_CHECKED)
                pipe.exists(keyspace.DISPATCH_DUE)
                pipe.scard(keyspace.DISPATCH_OPEN)
                checked, indexed, open_count = await pipe.execute()
        return not checked or (not indexed and int(open_count) > 0)

    async def missing_from_due(self, case_ids: Sequence[str]) -> list[str]:
        """The ids among ``case_ids`` that have no entry in the due index."""
        if not case_ids:
            return []
        with redis_errors("dispatch store"):
            scores = await self.redis.zmscore(keyspace.DISPATCH_DUE, list(case_ids))
        return [cid for cid, score in zip(case_ids, scores, strict=True) if score is None]

    async def mark_due_checked(self) -> None:
        with redis_errors("dispatch store"):
            await self.redis.set(keyspace.DISPATCH_DUE_CHECKED, "1", px=keyspace.DUE_RECONCILE_S * 1000)

    async def created_between(self, start: datetime, end: datetime, *, limit: int) -> list[Case]:
        """Cases created in ``[start, end)`` with their histories (at most ``limit``, the newest days first)."""
        ids: list[str] = []
        day = end.replace(hour=0, minute=0, second=0, microsecond=0)
        with redis_errors("dispatch store"):
            while day >= start.replace(hour=0, minute=0, second=0, microsecond=0) and len(ids) < limit:
                members = await self.redis.smembers(keyspace.dispatch_day_key(_day(day)))
                ids += sorted(_s(m) for m in members)
                day -= timedelta(days=1)
        cases: list[Case] = []
        for i in range(0, min(len(ids), limit), 200):
            cases += await self.get_many(ids[i : min(i + 200, limit)], history=True)
        return [c for c in cases if start <= c.created_at < end]

    # --- small durable writes beside the cases -------------------------------------------------------------
    async def append_intake(self, event: Mapping[str, str]) -> str:
        """XADD an event to the intake stream, acknowledged once on disk; returns the stream id."""
        with redis_errors("intake stream"):
            async with one_connection(self.redis, keyspace.DISPATCH_INTAKE) as conn:
                mid = await conn.xadd(keyspace.DISPATCH_INTAKE, dict(event))  # type: ignore[arg-type]
                if await self.aof_enabled():
                    await self._wait_aof(conn)
        return mid.decode() if isinstance(mid, bytes) else str(mid)

    async def request_extension(self, case_id: str, request: Mapping[str, str]) -> bool:
        """Record the handler's one extension request; False if one was already made.

        Its note is stored like a history note (masked, in its day's notes hash, the scan log's retention).
        """
        name = keyspace.case_extension_key(case_id)
        fields, note, ttl_ms = dict(request), request.get("note", ""), 0
        if note:
            day = day_of(datetime.fromisoformat(request["requested_at"]))
            ttl_ms = note_ttl_ms(day, self.note_retention_days, self.clock())
            fields.update(note="", note_ref=f"{day}:{EXTENSION_FIELD}")
        with redis_errors("dispatch store"):
            async with one_connection(self.redis, name) as conn:  # the request and its note share the case's tag
                if not await conn.hsetnx(name, "requested_at", request["requested_at"]):
                    return False
                await conn.hset(name, mapping=fields)  # type: ignore[arg-type]
                await conn.pexpire(name, self.case_retention_ms)
                if ttl_ms > 0:
                    notes = keyspace.case_notes_key(case_id, day)
                    sealed = self._seal_note(case_id, day, EXTENSION_FIELD, mask_personal(note).text)
                    await conn.hset(notes, EXTENSION_FIELD, sealed)
                    await conn.pexpire(notes, ttl_ms)
                if await self.aof_enabled():
                    await self._wait_aof(conn)
        return True

    async def extension_request(self, case_id: str) -> dict[str, str] | None:
        with redis_errors("dispatch store"):
            raw = await self.redis.hgetall(keyspace.case_extension_key(case_id))
        request = _text(raw)
        ref = request.pop("note_ref", "")
        if ref:
            day = ref.partition(":")[0]
            text = (await self._note_texts(case_id, [day]))[day].get(EXTENSION_FIELD, "")
            request.update(note=text, note_expired="" if text else "1")
        elif request.get("note"):
            request["note"] = mask_personal(request["note"]).text  # written inline before notes were split
        return request or None
