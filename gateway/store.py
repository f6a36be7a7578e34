"""The Redis data plane of the scan path: status cache, replay/sharing memory, scan log and intake events.

Every command of one scan joins the loop turn's pipeline (``CommandBatcher``): the lookup (status + nonce) is
one group, the record (log + exception event) another, so no command is awaited alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from gateway import keys
from gateway.errors import StoreUnavailableError
from gateway.redisio import CommandBatcher
from gateway.status_cache import UPSERT_LUA, StatusLocator, StatusRecord, pack_status, unpack_status
from policy.status import HolderStatus

__all__ = ["ScanLookup", "Store"]

Fields = Mapping[str, str]
UPSERT_CHUNK = 2000  # records per script call: bounds the time one script blocks the server


class ScanLookup:
    """What Redis knows about one presentation: the cached status and where the code was first seen."""

    __slots__ = ("first_place", "status")

    def __init__(self, status: HolderStatus | None, first_place: str | None) -> None:
        self.status = status
        self.first_place = first_place


class Store:
    def __init__(
        self, redis: Redis, *, secret: bytes, status_buckets: int, status_ttl_s: int, retention_days: int = 21
    ) -> None:
        self.redis = redis
        self.batcher = CommandBatcher(redis)
        self.locator = StatusLocator(secret, status_buckets)
        self.status_ttl_s = status_ttl_s
        self.retention_ms = retention_days * 86_400_000
        self._upsert = redis.register_script(UPSERT_LUA)
        self._day_keys: dict[str, bytes] = {}

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    # --- status cache ------------------------------------------------------------------------------------
    async def upsert_statuses(self, records: Sequence[StatusRecord]) -> list[bool]:
        """Write statuses, last-writer-wins by ``updated_at``; True where the record was applied."""
        located = [(*self.locator.locate(r.holder_ref), pack_status(r.status)) for r in records]
        applied = [False] * len(records)
        try:
            pipe = self.redis.pipeline(transaction=False)
            orders: list[list[int]] = []
            for start in range(0, len(located), UPSERT_CHUNK):
                grouped: dict[str, list[int]] = {}
                for i in range(start, min(start + UPSERT_CHUNK, len(located))):
                    grouped.setdefault(located[i][0], []).append(i)
                argv: list[Any] = [self.status_ttl_s]
                order: list[int] = []
                for members in grouped.values():
                    argv.append(len(members))
                    for i in members:
                        argv += [located[i][1], located[i][2]]
                    order += members
                orders.append(order)
                await self._upsert(keys=list(grouped), args=argv, client=pipe)
            replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"status upsert failed: {exc.__class__.__name__}") from exc
        for order, reply in zip(orders, replies, strict=True):
            for i, flag in zip(order, reply, strict=True):
                applied[i] = flag == 1
        return applied

    async def get_status(self, holder_ref: str) -> HolderStatus | None:
        key, field = self.locator.locate(holder_ref)
        (raw,) = await self.batcher.run(lambda p: p.hget(key, field))  # type: ignore[arg-type]
        return None if raw is None else unpack_status(raw)

    # --- scan path ---------------------------------------------------------------------------------------
    async def lookup_scan(self, holder_ref: str, nonce_key: str, place_id: str, nonce_ttl_s: int) -> ScanLookup:
        """Status read and replay memory in one group: SET NX GET records the first place atomically."""
        bucket, field = self.locator.locate(holder_ref)

        def fill(pipe: Pipeline) -> None:
            pipe.hget(bucket, field)
            pipe.set(nonce_key, place_id, nx=True, get=True, ex=max(1, nonce_ttl_s))

        raw_status, first = await self.batcher.run(fill)
        status = None if raw_status is None else unpack_status(raw_status)
        return ScanLookup(status, None if first is None else first.decode())

    async def day_key(self, day: str, expire_at: int) -> bytes:
        """The day's pseudonym key, created on first use with the day partition's expiry (crypto-shredding)."""
        cached = self._day_keys.get(day)
        if cached is not None:
            return cached
        name = keys.day_key(day)

        def fill(pipe: Pipeline) -> None:
            pipe.set(name, os.urandom(32), nx=True, exat=expire_at)
            pipe.get(name)

        _, value = await self.batcher.run(fill)
        if value is None:
            # The day is already past retention (EXAT in the past): whatever is written for it expires at
            # once, so a throwaway key pseudonymises it and nothing links it to anyone.
            return os.urandom(32)
        if len(self._day_keys) > 4:
            self._day_keys.clear()
        self._day_keys[day] = bytes(value)
        return bytes(value)

    async def record_scan(self, day: str, entry: Fields, expire_at: int, event: Fields | None) -> None:
        """Append the scan-log record and, for an exception, the dispatch intake event."""
        log_key = keys.scan_log_key(day)

        def fill(pipe: Pipeline) -> None:
            pipe.xadd(log_key, entry)  # type: ignore[arg-type]
            # Sent with every record, not once per day: if the partition was ever recreated (deleted, failed
            # over to a replica that missed the first EXPIREAT) it must never live without its expiry.
            pipe.expireat(log_key, expire_at)
            if event is not None:
                # Events carry a pseudonym and a sealed holder reference: none outlives the scan log's retention.
                # MINID trimming keeps the stream inside that window without a TTL on the stream itself.
                min_id = max(0, int(expire_at * 1000) - self.retention_ms - 86_400_000)
                pipe.xadd(keys.DISPATCH_INTAKE, event, minid=min_id, approximate=False)  # type: ignore[arg-type]

        await self.batcher.run(fill)

    async def aclose(self) -> None:
        await self.batcher.aclose()
