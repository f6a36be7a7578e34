"""Writing the status cache: last-writer-wins by ``updated_at``, decided on the server, grouped by bucket.

A batch is grouped by bucket on the client (``StatusBatch``); each script call covers the buckets of one
hash-tag group (256 consecutive buckets, gateway/keyspace.py), so the server answers a bucket with one HMGET, one
HSET of the records that win and one EXPIRE, however many records it gets, and each call stays inside one Redis
Cluster slot. Within a bucket the records keep their order, and the script takes them one after the other: a
holder twice in one batch is decided exactly as if the records had been written one by one.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections import defaultdict
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any

from redis.asyncio import Redis

from gateway.batcher import CommandBatcher
from gateway.errors import StoreUnavailableError
from gateway.keyspace import status_bucket_key
from gateway.redisio import Command, is_noscript, redis_errors
from gateway.status.cache import StatusLocator, StatusRecord, pack_status
from gateway.status.idcards import IdCardIndex

__all__ = ["BUCKET_RECORDS", "CALL_RECORDS", "UPSERT_LUA", "UPSERT_SHA", "StatusBatch", "StatusWriter"]

# Records per script call: bounds the time one script blocks the server (about 1 µs of server CPU a record).
CALL_RECORDS = 4000
# Records in one bucket argument: the script unpacks a bucket's fields (HMGET) and field-value pairs (HSET) onto
# the Lua stack, which holds fewer than 8000 values.
BUCKET_RECORDS = 1000
_TAG_BUCKETS = 256  # consecutive buckets that share a hash tag (gateway.keyspace.status_bucket_key)
_PREFIX = itemgetter(slice(0, 4))  # the digest bytes that pick the bucket

# KEYS[k]: a bucket; ARGV[1]: the TTL in seconds; ARGV[k + 1]: KEYS[k]'s records, 21 bytes each: the 12-byte keyed
# hash of the holder (4 bytes that picked the bucket, then the 8-byte field) and the 9-byte value. Last-writer-wins
# by the record's own updated_at (the value's first 4 bytes, big-endian), compared as numbers, never as strings:
# Lua string comparison follows the server's collation locale. An equal updated_at does not overwrite. Records are
# decided in order, each against what the ones before it left. Reply: '1' (written) or '0' (not newer) per record.
UPSERT_LUA = """
local function ts(s)
  local a, b, c, d = string.byte(s, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
for k = 1, #KEYS do
  if #ARGV[k + 1] % 21 ~= 0 then return redis.error_reply('ERR status records are 21 bytes each') end
end
local ttl = ARGV[1]
local sub, call, concat = string.sub, redis.call, table.concat
local fields, writes, flags, out = {}, {}, {}, {}
for k = 1, #KEYS do
  local key, blob = KEYS[k], ARGV[k + 1]
  local n = #blob / 21
  for i = 1, n do
    local at = i * 21 - 16
    fields[i] = sub(blob, at, at + 7)
  end
  local stored = call('HMGET', key, unpack(fields, 1, n))
  local wrote, w = {}, 0
  for i = 1, n do
    local f = fields[i]
    local at = i * 21 - 8
    local v = sub(blob, at, at + 8)
    local old = wrote[f] or stored[i]
    if (not old) or ts(v) > ts(old) then
      wrote[f] = v
      writes[w + 1] = f; writes[w + 2] = v; w = w + 2
      flags[i] = '1'
    else
      flags[i] = '0'
    end
  end
  if w > 0 then
    call('HSET', key, unpack(writes, 1, w))
    call('EXPIRE', key, ttl)
  end
  out[k] = concat(flags, '', 1, n)
end
return concat(out)
"""
UPSERT_SHA = hashlib.sha1(UPSERT_LUA.encode()).hexdigest()


class StatusBatch:
    """Records grouped by bucket, in the order they were added; holder references are dropped once hashed.

    ``dense`` keeps one list per bucket (a bulk load fills nearly all of them); otherwise only the buckets used.
    """

    __slots__ = ("_groups", "_locator", "lines")

    def __init__(self, locator: StatusLocator, *, dense: bool = False) -> None:
        self._locator = locator
        self._groups: list[list[bytes]] | defaultdict[int, list[bytes]] = (
            [[] for _ in range(locator.buckets)] if dense else defaultdict(list)
        )
        self.lines = 0

    def add(self, holders: Sequence[bytes], values: Sequence[bytes]) -> list[int]:
        """Add (encoded holder reference, packed value) pairs; the bucket of each."""
        copy = self._locator.hasher().copy

        def record(holder: bytes, value: bytes) -> bytes:
            h = copy()
            h.update(holder)
            return h.digest() + value

        records = list(map(record, holders, values))
        modulus = self._locator.buckets
        buckets = [prefix % modulus for prefix in _uint32(b"".join(map(_PREFIX, records)))]
        groups = self._groups
        for bucket, rec in zip(buckets, records, strict=True):
            groups[bucket].append(rec)
        self.lines += len(records)
        return buckets

    def __len__(self) -> int:
        return self.lines

    def buckets(self) -> Iterator[tuple[int, list[bytes]]]:
        """(bucket, its records) for every bucket with records, by bucket number."""
        groups = self._groups
        if isinstance(groups, list):
            return ((bucket, records) for bucket, records in enumerate(groups) if records)
        return ((bucket, groups[bucket]) for bucket in sorted(groups))


def _uint32(raw: bytes) -> array[int]:
    """Big-endian 4-byte unsigned integers."""
    numbers = array(_UINT32, raw)
    if sys.byteorder == "little":
        numbers.byteswap()
    return numbers


_UINT32 = next(code for code in "IL" if array(code).itemsize == 4)


class StatusWriter:
    """Runs the last-writer-wins script over batches; loads it first and again after NOSCRIPT."""

    def __init__(self, redis: Redis, batcher: CommandBatcher, locator: StatusLocator, ttl_s: int,
                 id_cards: IdCardIndex | None = None) -> None:
        self._redis = redis
        self._batcher = batcher
        self._locator = locator
        self._ttl_s = ttl_s
        self._id_cards = id_cards
        self._script_loaded = False
        self._keys: dict[int, str] = {}
        self._owns_batcher = False

    @classmethod
    def standalone(cls, redis: Redis, *, secret: bytes, status_buckets: int, status_ttl_s: int) -> StatusWriter:
        """A writer with a batcher of its own (the CLI, the demo, the benchmark corpus); close it with ``aclose``.
        The gateway's writer shares the scan path's batcher instead (``gateway.appstate.BATCHER``)."""
        writer = cls(redis, CommandBatcher(redis), StatusLocator(secret, status_buckets), status_ttl_s,
                     IdCardIndex(secret, status_ttl_s))
        writer._owns_batcher = True
        return writer

    @property
    def redis(self) -> Redis:
        return self._redis

    @property
    def locator(self) -> StatusLocator:
        """Where a holder's status lives; the scan path reads with the same one."""
        return self._locator

    @property
    def id_cards(self) -> IdCardIndex | None:
        """The identity-card index (issue 18); the scan path reads with the same one."""
        return self._id_cards

    async def aclose(self) -> None:
        if self._owns_batcher:
            await self._batcher.aclose()

    async def upsert_statuses(self, records: Sequence[StatusRecord]) -> list[bool]:
        """Write statuses, last-writer-wins by ``updated_at``; True where the record was applied. A record that
        names an identity card also (re)writes its index entry, stale or not (the index maps a number to the holder
        the feed names for it; the status itself stays last-writer-wins)."""
        applied = await self.upsert([(r.holder_ref, pack_status(r.status)) for r in records])
        await self.index_id_cards([(r.id_card, r.holder_ref) for r in records if r.id_card is not None])
        return applied

    async def index_id_cards(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Write the identity-card index entries of (normalised number, holder reference) pairs (one group).

        :raises StoreUnavailableError: Redis did not take them.
        """
        if not pairs:
            return
        if self._id_cards is None:
            raise RuntimeError("this status writer has no identity-card index")
        await self._batcher.run(self._id_cards.entries(pairs))

    def batch(self, *, dense: bool = False) -> StatusBatch:
        """An empty batch; ``dense`` for a bulk load (see ``StatusBatch``)."""
        return StatusBatch(self._locator, dense=dense)

    def _calls(self, batch: StatusBatch) -> list[Command]:
        """One call per hash-tag group (more when it holds over CALL_RECORDS records), buckets in order."""
        calls: list[Command] = []
        keys: list[str] = []
        blobs: list[bytes] = []
        size = 0
        tag = 0
        names = self._keys
        for bucket, records in batch.buckets():
            if keys and (bucket // _TAG_BUCKETS != tag or size + len(records) > CALL_RECORDS):
                calls.append(("EVALSHA", UPSERT_SHA, len(keys), *keys, self._ttl_s, *blobs))
                keys, blobs, size = [], [], 0
            tag = bucket // _TAG_BUCKETS
            key = names.get(bucket)
            if key is None:
                key = names[bucket] = status_bucket_key(bucket)
            if len(records) <= BUCKET_RECORDS:
                keys.append(key)
                blobs.append(b"".join(records))
            else:
                for start in range(0, len(records), BUCKET_RECORDS):
                    keys.append(key)
                    blobs.append(b"".join(records[start : start + BUCKET_RECORDS]))
            size += len(records)
        if keys:
            calls.append(("EVALSHA", UPSERT_SHA, len(keys), *keys, self._ttl_s, *blobs))
        return calls

    async def apply(self, batch: StatusBatch) -> tuple[int, int]:
        """Write a batch; (applied, stale) record counts."""
        replies = await self._run_script(self._calls(batch))
        applied = sum(bytes(reply).count(b"1") for reply in replies)
        return applied, batch.lines - applied

    async def upsert(self, records: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Write (holder reference, packed value) pairs; True where that record was written."""
        batch = self.batch()
        buckets = batch.add([holder.encode() for holder, _ in records], [value for _, value in records])
        replies = await self._run_script(self._calls(batch))
        # The replies follow the buckets in order and, inside a bucket, the records in order.
        order = sorted(range(len(records)), key=buckets.__getitem__)
        flags = b"".join(bytes(reply) for reply in replies)
        applied = [False] * len(records)
        for i, flag in zip(order, flags, strict=True):
            applied[i] = flag == 0x31  # "1"
        return applied

    async def _run_script(self, calls: list[Command]) -> list[Any]:
        """Run EVALSHA calls, loading the script first (and again after a server restart: NOSCRIPT)."""
        for attempt in range(2):
            if not self._script_loaded:
                with redis_errors("status cache"):
                    await self._redis.script_load(UPSERT_LUA)
                self._script_loaded = True
            replies = await self._batcher.submit(calls)
            if attempt == 0 and any(is_noscript(r) for r in replies):
                self._script_loaded = False
                continue
            for reply in replies:
                if isinstance(reply, Exception):
                    raise StoreUnavailableError(f"status upsert failed: {reply.__class__.__name__}")
            return replies
        raise StoreUnavailableError("status upsert script could not be loaded")
