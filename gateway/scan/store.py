"""The Redis data plane of the scan path: status cache, replay/sharing memory, scan log and intake events.

Every command of one scan joins the loop turn's pipeline (``CommandBatcher``): the lookup (status + nonce) is
one group, the record (log + exception event) another, so no command is awaited alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from gateway import keyspace
from gateway.batcher import CommandBatcher
from gateway.errors import StoreUnavailableError
from gateway.intake import scan_event_place_reason
from gateway.redisio import Command
from gateway.status.cache import StatusLocator, unpack_status
from policy.status import HolderStatus

__all__ = ["FieldPairs", "LookupRequest", "ReplayMark", "ScanLookup", "ScanRecord", "ScanStore"]

# A stream entry as XADD takes it: field, value, field, value, ... (built flat: no dict per scan on the hot path).
FieldPairs = tuple[str, ...]
# What one scan asks of the store: (holder reference or None, replay-memory key, that key's TTL in seconds,
# the place the code is presented at).
LookupRequest = tuple[str | None, str, int, str]
# What one scan leaves: (its log day, the day partition's expiry, the log entry, the intake event or None).
ScanRecord = tuple[str, int, FieldPairs, FieldPairs | None]
# A replay mark written after a store outage: (replay-memory key, first place, remaining TTL in seconds).
ReplayMark = tuple[str, str, int]


class ScanLookup:
    """What Redis knows about one presentation: the cached status and where the code was first seen."""

    __slots__ = ("first_place", "status")

    def __init__(self, status: HolderStatus | None, first_place: str | None) -> None:
        self.status = status
        self.first_place = first_place


class ScanStore:
    """The scan path's reads and writes; every command joins the loop turn's pipeline (``batcher``)."""

    def __init__(
        self, redis: Redis, batcher: CommandBatcher, locator: StatusLocator, *, retention_days: int = 21
    ) -> None:
        self.redis = redis
        self.batcher = batcher
        self.locator = locator  # the status cache's layout (gateway/status/cache.py): the lookup reads with it
        self.retention_ms = retention_days * 86_400_000
        # No day keys are kept in the process: one deleted in Redis (shredded, expired) must never pseudonymise
        # again, so every turn reads the key with its lookups (``lookup_scans(days=...)``).

    # --- scan path ---------------------------------------------------------------------------------------
    # Commands are plain tuples (``gateway.redisio.Command``); replies come back raw, as hiredis parses them.
    # ``timeout_s`` bounds the wait for Redis (settings.redis_timeout_ms): past it, StoreUnavailableError.
    async def lookup_scans(
        self, requests: Sequence[LookupRequest], *, days: Mapping[str, int] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[list[ScanLookup | None], dict[str, bytes]]:
        """For each (holder reference or None, replay-memory key, its TTL, place): the cached status, when a
        holder is given, and the place the code was first presented at; ``None`` where Redis could not answer.
        With ``days`` (day -> its partition's expiry), also the pseudonym key of each day (``day_keys``); a day
        whose key could not be read is missing from the answer.

        All in one group. SET NX GET records the first place atomically, so of two presentations of one code,
        in one request or in two, exactly one finds the memory empty.
        """
        commands: list[Command] = []
        locate = self.locator.locate
        for holder_ref, memory_key, ttl_s, place_id in requests:
            if holder_ref is not None:
                commands.append(("HGET", *locate(holder_ref)))
            if memory_key:  # "": no replay memory (an identity card is no artefact a copy can be made of)
                commands.append(("SET", memory_key, place_id, "NX", "GET", "EX", max(1, ttl_s)))
        fresh = [_day_key_command(day, expire_at) for day, expire_at in (days or {}).items()]
        commands.extend(command for _, command, _ in fresh)
        try:
            replies = await self.batcher.submit(commands, timeout_s)
        except StoreUnavailableError:
            return [None] * len(requests), {}
        lookups: list[ScanLookup | None] = []
        at = 0
        for holder_ref, memory_key, _, _ in requests:
            raw_status = first = None
            if holder_ref is not None:
                raw_status, at = replies[at], at + 1
            if memory_key:
                first, at = replies[at], at + 1
            if isinstance(raw_status, Exception) or isinstance(first, Exception):
                lookups.append(None)
                continue
            status = None if raw_status is None else unpack_status(raw_status)
            lookups.append(ScanLookup(status, None if first is None else first.decode()))
        keys = {day: _day_key_of(reply, value) for (day, _, value), reply in zip(fresh, replies[at:], strict=True)
                if not isinstance(reply, Exception)}
        return lookups, keys

    async def find_id_holders(self, lookups: Sequence[Command], *, timeout_s: float | None = None) -> list[object]:
        """The identity-card index replies (``IdCardIndex.lookup`` commands), one group; an ``Exception`` in place
        of a reply that failed. Only a turn with identity-card scans pays this round trip (docs/architecture.md).

        :raises StoreUnavailableError: Redis did not answer in time.
        """
        return list(await self.batcher.submit(lookups, timeout_s))

    async def day_keys(self, days: Mapping[str, int], *, timeout_s: float | None = None) -> dict[str, bytes]:
        """Each day's pseudonym key (day -> its partition's expiry), created on first use with that expiry
        (crypto-shredding): the record's own group, when no lookup group read them (a catch-up after an outage).

        :raises StoreUnavailableError: Redis did not answer.
        """
        fresh = [_day_key_command(day, expire_at) for day, expire_at in days.items()]
        replies = await self.batcher.run([command for _, command, _ in fresh], timeout_s)
        return {day: _day_key_of(reply, value) for (day, _, value), reply in zip(fresh, replies, strict=True)}

    async def record_scans(
        self, records: Sequence[ScanRecord], *, marks: Sequence[ReplayMark] = (), timeout_s: float | None = None
    ) -> None:
        """Append each scan-log record to its day's partition and, for an exception, its dispatch intake event,
        and set the replay marks the lookups of a store outage could not set (one group)."""
        commands: list[Command] = []
        expiries: dict[str, int] = {}
        counters: dict[str, int] = {}  # the per-place exception counters touched: key -> its day's expiry
        for day, expire_at, entry, event in records:
            expiries[day] = expire_at
            commands.append(("XADD", keyspace.scan_log_key(day), "*", *entry))
            if event is not None:
                # No MINID here: an acknowledged event must stay until the dispatch worker has made it a case or
                # dead-lettered it, which only the group knows. The sweep trims by time, never past an event the
                # group has not finished (gateway/dispatch/worker.py ``trim_to_retention``).
                commands.append(("XADD", keyspace.DISPATCH_INTAKE, "*", *event))
                # A site manager's counts per day and reason (GET /v1/places/{id}/exceptions): one HINCRBY in
                # this group, not a read of cases or of the log; nothing personal, the log's retention.
                place_id, reason = scan_event_place_reason(event)
                counter = keyspace.place_exceptions_key(place_id, day)
                counters[counter] = expire_at
                commands.append(("HINCRBY", counter, reason, 1))
        # Sent with every group, not once per day: if the partition was ever recreated (deleted, failed over to
        # a replica that missed the first EXPIREAT) it must never live without its expiry.
        commands.extend(("EXPIREAT", keyspace.scan_log_key(day), expire_at) for day, expire_at in expiries.items())
        commands.extend(("EXPIREAT", counter, expire_at) for counter, expire_at in counters.items())
        # NX: a presentation after the outage may already have set the mark; the first place stays the first.
        commands.extend(("SET", key, place_id, "NX", "EX", ttl_s) for key, place_id, ttl_s in marks)
        await self.batcher.run(commands, timeout_s)



def _day_key_command(day: str, expire_at: int) -> tuple[str, Command, bytes]:
    """(day, the command that reads the day's key or creates it as ``value``, ``value``).

    NX GET: the key stored wins; a day whose key was deleted early (``placegate privacy shred``) gets a new random
    one with the partition's expiry, so nothing links the new records to the old.
    """
    value = os.urandom(32)
    return day, ("SET", keyspace.day_key(day), value, "NX", "GET", "EXAT", expire_at), value


def _day_key_of(reply: bytes | None, created: bytes) -> bytes:
    # None: this command created the key (or the day is already past retention, EXAT in the past, and the key
    # was not stored: what is written for that day expires at once, and the throwaway key links it to nobody).
    return created if reply is None else bytes(reply)
