"""Folding (docs/dispatch.md, "Merging"): events of one kind at one place within the fold window join one case.

A fold key names the open case of its kind; SET NX GET makes exactly one of two consumers the opener, and the
count script adds each further event to the case's occurrence set, idempotent by event id, refusing a closed or
full case (the next event then opens a new case: ``ROLL_LUA`` hands the key over). ``CaseFolding`` is the part
of ``CaseStore`` (gateway/dispatch/store.py) that does it; the store provides the connection, the durability
wait and the case reads it relies on.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from gateway import keyspace
from gateway.errors import CaseRefusedError, NotDurableError
from gateway.redisio import Command, is_cluster, is_noscript, one_connection, redis_errors
from policy.casework import TERMINAL_STATES, Case

__all__ = ["FOLD_MAX_OCCURRENCES", "OCCUR_LUA", "ROLL_LUA", "WRITE_RETRIES", "CaseFolding", "Occurrences"]

WRITE_RETRIES = 8
# Events one case holds (docs/dispatch.md, "Merging"): the next one of its kind opens a new case, so the
# occurrence set and the list of times a case read returns stay bounded.
FOLD_MAX_OCCURRENCES = 100
_FOLDS_REMEMBERED = 10_000  # fold keys a consumer remembers the case of (CaseStore.fold_many)

# KEYS: case hash, its occurrence set. ARGV: event id, Unix ms, TTL ms (few arguments: one call per folded event).
# Returns 1 counted, 0 already counted (a redelivery), -1 the case is terminal, -2 the case is full. A case not
# written yet (its opener's write is on its way) takes the occurrence: the opener's event makes it, or is
# redelivered.
OCCUR_LUA = f"""
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'closed' or st == 'cancelled' then return -1 end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
if redis.call('ZCARD', KEYS[2]) >= {FOLD_MAX_OCCURRENCES} then return -2 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""
assert {s.value for s in TERMINAL_STATES} == {"closed", "cancelled"}  # the states the script refuses
# KEYS: a fold key. ARGV: the case id it must still name (or none), the new case id, the window ms. Hands the
# fold over to a new case once the old one is closed or full; returns the id the key names afterwards.
ROLL_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return ARGV[2]
end
return cur
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Occurrences:
    """The events folded into a case: how many, and their times (at most ``FOLD_MAX_OCCURRENCES``, oldest
    first)."""

    count: int
    times: tuple[datetime, ...]


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CaseFolding(abc.ABC):
    """Folding and occurrences, a part of ``CaseStore``, which provides the attributes and methods declared here."""

    redis: Redis
    waitaof_timeout_ms: int
    case_retention_ms: int
    _folds: dict[str, tuple[str, float]]  # fold key -> (case id, monotonic expiry): fold_many
    _occur_script: AsyncScript
    _roll_script: AsyncScript

    @abc.abstractmethod
    async def aof_enabled(self) -> bool: ...

    @abc.abstractmethod
    async def _wait_aof(self, conn: Redis) -> None: ...

    @abc.abstractmethod
    async def _on_node(self, key: str, commands: Sequence[Command], durable: bool) -> tuple[Any, bool]: ...

    @abc.abstractmethod
    async def get(self, case_id: str, *, history: bool = True) -> Case | None: ...

    async def fold(self, fold: str, case_id: str, event_id: str, at_ms: int, window_ms: int) -> tuple[str, str]:
        """Fold an event into the open case ``fold`` names, or claim the fold for ``case_id`` (the event's own).

        :returns: (case id, outcome): ``open`` (the caller writes ``case_id`` and records its occurrence),
            ``folded`` (counted on the returned case, on disk), ``duplicate`` (counted before: a redelivery).
        """
        self._folds.pop(fold, None)  # asked alone: the case is closed or full, or this event opens it
        with redis_errors("dispatch store"):
            if not await self.aof_enabled() or is_cluster(self.redis):
                # Nothing to wait for, or a cluster, where the fold key and the case live on different nodes:
                # no connection of its own (the count is confirmed on its node by ``_count_on_disk``).
                return await self._fold_on(self.redis, fold, case_id, event_id, at_ms, window_ms)
            async with one_connection(self.redis) as conn:  # WAITAOF counts this connection's writes
                return await self._fold_on(conn, fold, case_id, event_id, at_ms, window_ms)

    async def _fold_on(
        self, conn: Redis, fold: str, case_id: str, event_id: str, at_ms: int, window_ms: int
    ) -> tuple[str, str]:
        # SET NX GET: of two consumers folding the same kind, exactly one finds the key empty.
        target = cast(bytes | None, await conn.set(fold, case_id, nx=True, get=True, px=window_ms))
        for _ in range(WRITE_RETRIES):
            if target is None or _s(target) == case_id:
                # Counted at once, before the case is written: the opener's event is the first of its case, and
                # no fold that arrives meanwhile can fill the case without it.
                await self._occur(conn, case_id, event_id, at_ms)
                return case_id, "open"
            other = _s(target)
            counted = await self._occur(conn, other, event_id, at_ms)
            if counted >= 0:
                await self._count_on_disk(conn, other)
                return other, "folded" if counted else "duplicate"
            # Closed or full: this event opens the next case, unless another consumer's already did.
            target = await self._roll_script(keys=[fold], args=[other, case_id, window_ms], client=conn)
        raise CaseRefusedError("the fold kept changing; try again", code="case_conflict")

    async def _count_on_disk(self, conn: Redis, case_id: str) -> None:
        """Wait until the count just made on ``case_id`` is on disk (AOF on). One server: ``conn``'s own writes. A
        cluster: the count went out on one of the cluster client's connections; a node's AOF is written in
        command order, so a later write on that node confirmed on disk (an unchanged TTL set again, on the
        occurrence set the count created) covers it."""
        if not await self.aof_enabled():
            return
        if not is_cluster(self.redis):
            await self._wait_aof(conn)
            return
        occurrences = keyspace.case_occurrences_key(case_id)
        await self._on_node(occurrences, [("PEXPIRE", occurrences, self.case_retention_ms)], True)

    async def fold_many(self, folds: Sequence[tuple[str, str, str, int]], window_ms: int) -> list[tuple[str, str]]:
        """``fold`` for the events of one intake batch, in one or two pipelined round trips (a storm of one
        holder's replays costs the consumer one command per event, not several awaited ones: issue 15).

        The case a fold key names is remembered here until the key's own expiry (read with PTTL beside it), so a
        storm asks the key once per window, not once per event; that memory is safe to be stale, because the
        count script refuses a closed or full case (``retry``), and the key itself is then asked again.

        :param folds: per event (fold key, its own case id, event id, Unix ms), in stream order.
        :returns: per event (case id, outcome) as ``fold``, except ``retry`` for an event whose case is closed or
            full: the caller folds it alone (``fold`` hands the key over), as for ``open``.
        """
        if not folds:
            return []
        durable = await self.aof_enabled()
        now = time.monotonic()
        known: list[str | None] = [self._known_fold(fold, now) for fold, _, _, _ in folds]
        targets: list[str | None] = list(known)
        with redis_errors("dispatch store"):
            missing = [i for i, k in enumerate(known) if k is None]
            if missing:
                async with self.redis.pipeline(transaction=False) as pipe:
                    # In order: of two events of one kind in the batch, the first claims the key, the second folds.
                    for i in missing:
                        fold, case_id = folds[i][0], folds[i][1]
                        pipe.set(fold, case_id, nx=True, get=True, px=window_ms)  # the reply: the old value
                        pipe.execute_command("PTTL", fold)
                    replies = await pipe.execute()
                for n, i in enumerate(missing):
                    got, ttl = replies[2 * n], int(replies[2 * n + 1])
                    targets[i] = None if got is None else _s(got)
                    self._remember_fold(folds[i][0], targets[i] or folds[i][1], now + ttl / 1000)
            counted = await self._count_many(folds, targets, durable)
        out: list[tuple[str, str]] = []
        for (fold, case_id, _, _), target, n in zip(folds, targets, counted, strict=True):
            if target is None or target == case_id:
                out.append((case_id, "open"))  # an opener: its own event is counted, the case is still to write
            elif n < 0:
                self._folds.pop(fold, None)
                out.append((target, "retry"))
            else:
                out.append((target, "folded" if n == 1 else "duplicate"))
        return out

    async def _count_many(self, folds: Sequence[tuple[str, str, str, int]], targets: Sequence[str | None],
                          durable: bool) -> list[int]:  # fmt: skip
        """The count script for every event on its case, one pipeline (EVALSHA; the script is loaded again and
        the pipeline repeated if the server lost it: counting is idempotent by event id)."""
        ttl = str(self.case_retention_ms)
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for (_, case_id, event_id, at_ms), target in zip(folds, targets, strict=True):
                    into = target or case_id  # an opener counts its own event first, as ``fold`` does
                    pipe.execute_command(
                        "EVALSHA", self._occur_script.sha, 2, keyspace.case_key(into),
                        keyspace.case_occurrences_key(into), event_id, str(at_ms), ttl,
                    )  # fmt: skip
                waits = 0
                if durable and is_cluster(self.redis):
                    # A cluster pipeline sends each node its commands on one of its connections: one WAITAOF per
                    # node written, behind that node's counts, counts them.
                    cluster = cast(RedisCluster, self.redis)
                    nodes = {
                        n.name: n
                        for n in (
                            cluster.get_node_from_key(keyspace.case_key(t or c))
                            for (_, c, _, _), t in zip(folds, targets, strict=True)
                        )
                        if n
                    }
                    for node in nodes.values():
                        pipe.execute_command("WAITAOF", 1, 0, self.waitaof_timeout_ms, target_nodes=node)
                    waits = len(nodes)
                elif durable:  # the pipeline's own connection: WAITAOF counts its writes
                    pipe.execute_command("WAITAOF", 1, 0, self.waitaof_timeout_ms)
                    waits = 1
                replies = await pipe.execute(raise_on_error=False)
            # redis-py strips the NOSCRIPT prefix from the message (a NoScriptError): ``is_noscript`` knows both.
            if any(is_noscript(r) for r in replies):
                await self.redis.script_load(OCCUR_LUA)
                continue
            for r in replies:
                if isinstance(r, Exception):
                    raise r
            if any(int(r[0]) < 1 for r in replies[len(folds) : len(folds) + waits]):
                raise NotDurableError("the write was not confirmed on disk in time")
            return [int(r) for r in replies[: len(folds)]]
        raise CaseRefusedError("the count script could not be loaded", code="case_conflict")

    def _known_fold(self, fold: str, now: float) -> str | None:
        found = self._folds.get(fold)
        if found is None or found[1] <= now:
            return None
        return found[0]

    def _remember_fold(self, fold: str, case_id: str, until: float) -> None:
        if len(self._folds) >= _FOLDS_REMEMBERED:  # a bound, not an LRU: a storm refills it in one batch
            self._folds.clear()
        self._folds[fold] = (case_id, until)

    async def _occur(self, conn: Redis, case_id: str, event_id: str, at_ms: int) -> int:
        keys = [keyspace.case_key(case_id), keyspace.case_occurrences_key(case_id)]
        return int(await self._occur_script(keys=keys, args=[event_id, str(at_ms), str(self.case_retention_ms)],
                                            client=conn))  # fmt: skip

    async def alias(self, case_id: str, target: str) -> None:
        """Let ``case_id`` (a report's announced id) lead to ``target``, the case that holds the report."""
        with redis_errors("dispatch store"):
            await self.redis.set(keyspace.case_alias_key(case_id), target, px=self.case_retention_ms)

    async def add_occurrences(self, absorbed: Case, into: str) -> None:
        """A manual merge: the absorbed case's occurrences (or its own event) join those of ``into``; the
        occurrence bound applies to folding only, so a merged case may hold more."""
        with redis_errors("dispatch store"):
            found: list[tuple[bytes, float]] = await self.redis.zrange(  # type: ignore[assignment]
                keyspace.case_occurrences_key(absorbed.case_id), 0, -1, withscores=True
            )
            members = {_s(m): ms for m, ms in found} or {absorbed.case_id: absorbed.created_at.timestamp() * 1000}
            async with self.redis.pipeline(transaction=False) as pipe:
                if not await self.redis.exists(keyspace.case_occurrences_key(into)):
                    own = await self.get(into, history=False)
                    if own is not None:  # its own event, as ``occurrences`` counts it
                        pipe.zadd(keyspace.case_occurrences_key(into), {into: own.created_at.timestamp() * 1000})
                pipe.zadd(keyspace.case_occurrences_key(into), members, nx=True)
                pipe.pexpire(keyspace.case_occurrences_key(into), self.case_retention_ms)
                await pipe.execute()

    async def occurrences(self, case: Case) -> Occurrences:
        """The events folded into ``case``; a case that never folded counts its own event (its report time)."""
        with redis_errors("dispatch store"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keyspace.case_occurrences_key(case.case_id))
                pipe.zrange(keyspace.case_occurrences_key(case.case_id), 0, FOLD_MAX_OCCURRENCES - 1, withscores=True)
                count, members = await pipe.execute()
        if not count:
            return Occurrences(1, (case.created_at,))
        return Occurrences(int(count), tuple(_EPOCH + timedelta(milliseconds=int(ms)) for _, ms in members))
